// Command slipway-configcheck checks Kubernetes component configuration files with the
// code the component binaries themselves link: the component's own scheme, decoding
// strictly (an unknown or duplicate field is an error here, where kubelet and kube-proxy
// would only log "using lenient decoding" and carry on), then the component's own
// validation. The kubelet has no dry-run mode, so this is the only way to check a
// KubeletConfiguration without starting a kubelet on the host.
//
// scripts/build-kubernetes.sh copies this file into the Kubernetes source tree as
// cmd/slipway-configcheck and builds it with the binaries, so it always matches them.
//
// Usage: slipway-configcheck kubelet|kube-proxy|kube-scheduler FILE
package main

import (
	"fmt"
	"io/ioutil"
	"os"

	"k8s.io/apimachinery/pkg/runtime/serializer"
	kubeletconfig "k8s.io/kubernetes/pkg/kubelet/apis/config"
	kubeletscheme "k8s.io/kubernetes/pkg/kubelet/apis/config/scheme"
	kubeletvalidation "k8s.io/kubernetes/pkg/kubelet/apis/config/validation"
	proxyconfig "k8s.io/kubernetes/pkg/proxy/apis/config"
	proxyscheme "k8s.io/kubernetes/pkg/proxy/apis/config/scheme"
	proxyvalidation "k8s.io/kubernetes/pkg/proxy/apis/config/validation"
	schedconfig "k8s.io/kubernetes/pkg/scheduler/apis/config"
	schedscheme "k8s.io/kubernetes/pkg/scheduler/apis/config/scheme"
	schedvalidation "k8s.io/kubernetes/pkg/scheduler/apis/config/validation"
)

func check(component string, data []byte) (string, error) {
	switch component {
	case "kubelet":
		_, codecs, err := kubeletscheme.NewSchemeAndCodecs(serializer.EnableStrict)
		if err != nil {
			return "", err
		}
		obj, gvk, err := codecs.UniversalDecoder().Decode(data, nil, nil)
		if err != nil {
			return "", fmt.Errorf("strict decoding: %v", err)
		}
		kc, ok := obj.(*kubeletconfig.KubeletConfiguration)
		if !ok {
			return "", fmt.Errorf("not a KubeletConfiguration: %v", gvk)
		}
		return gvk.String(), kubeletvalidation.ValidateKubeletConfiguration(kc)
	case "kube-proxy":
		obj, gvk, err := proxyscheme.Codecs.UniversalDecoder().Decode(data, nil, nil)
		if err != nil {
			return "", fmt.Errorf("strict decoding: %v", err)
		}
		pc, ok := obj.(*proxyconfig.KubeProxyConfiguration)
		if !ok {
			return "", fmt.Errorf("not a KubeProxyConfiguration: %v", gvk)
		}
		return gvk.String(), proxyvalidation.Validate(pc).ToAggregate()
	case "kube-scheduler":
		obj, gvk, err := schedscheme.Codecs.UniversalDecoder().Decode(data, nil, nil)
		if err != nil {
			return "", fmt.Errorf("strict decoding: %v", err)
		}
		sc, ok := obj.(*schedconfig.KubeSchedulerConfiguration)
		if !ok {
			return "", fmt.Errorf("not a KubeSchedulerConfiguration: %v", gvk)
		}
		return gvk.String(), schedvalidation.ValidateKubeSchedulerConfiguration(sc).ToAggregate()
	}
	return "", fmt.Errorf("unknown component %q (want kubelet, kube-proxy or kube-scheduler)", component)
}

func main() {
	if len(os.Args) != 3 {
		fmt.Fprintln(os.Stderr, "usage: slipway-configcheck kubelet|kube-proxy|kube-scheduler FILE")
		os.Exit(2)
	}
	data, err := ioutil.ReadFile(os.Args[2])
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	gvk, err := check(os.Args[1], data)
	if err != nil {
		fmt.Fprintf(os.Stderr, "%s: %s: %v\n", os.Args[2], os.Args[1], err)
		os.Exit(1)
	}
	fmt.Printf("ok %s %s\n", os.Args[2], gvk)
}
