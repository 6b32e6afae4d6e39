// A stand-in for registry.k8s.io/pause: the sandbox process every pod starts first. The
// rehearsal has no registry to pull the real one from, so scripts/rehearse-container.sh
// builds this (static, CGO_ENABLED=0) and imports it into containerd under the pause
// image name the rendered containerd config names. It waits for SIGINT/SIGTERM and
// reaps adopted children, like the C original.
package main

import (
	"os"
	"os/signal"
	"syscall"
)

func main() {
	c := make(chan os.Signal, 1)
	signal.Notify(c, syscall.SIGINT, syscall.SIGTERM)
	go func() {
		// Reap adopted children, as the C pause does.
		ch := make(chan os.Signal, 8)
		signal.Notify(ch, syscall.SIGCHLD)
		for range ch {
			for {
				var ws syscall.WaitStatus
				if pid, err := syscall.Wait4(-1, &ws, syscall.WNOHANG, nil); pid <= 0 || err != nil {
					break
				}
			}
		}
	}()
	<-c
}
