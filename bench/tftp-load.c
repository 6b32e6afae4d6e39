// A small TFTP load client for bench/tftp.bench.ts: CONCURRENCY transfers of one file at
// once (each slot starts its next transfer when one ends) until TRANSFERS are done, the
// way N firmware clients would fetch a loader. C and one epoll loop, so the client costs
// far less CPU per packet than either server and the ratio measures the servers.
//
// Each transfer is what iPXE or a PXE ROM sends: RRQ octet with blksize (unless 0) and
// tsize 0, windowsize only when asked (RFC 7440); lock-step ACKs otherwise. Every byte
// is compared with the local copy of the file (mmap): a fast wrong transfer fails.
// Bounded: a packet unanswered for TIMEOUT_MS is sent again at most 5 times, and the
// whole run stops at DEADLINE_S.
//
//   tftp-load SERVER PORT FILE LOCAL_COPY BLKSIZE WINDOWSIZE CONCURRENCY TRANSFERS TIMEOUT_MS DEADLINE_S
// Output, one line each: "T <ms> <bytes>" per completed transfer, "F <why>" per failed
// one, and last "W <wall ms>".
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define MAX_SLOTS 1024
#define MAX_RETRIES 5

struct xfer {
  int fd;
  int active;
  int tid_set;
  struct sockaddr_in tid;
  uint64_t expected; /* next block, unwrapped */
  uint64_t bytes;
  int blksize;
  int window;
  int inwin;   /* blocks received since the last ACK (windowed) */
  uint64_t reacked; /* the block a loss report was sent for (windowed), +1 */
  double t0, last;
  int retries;
  unsigned char pkt[600];
  size_t pktlen;
};

static struct sockaddr_in server;
static const char *file;
static unsigned char *copy;
static size_t copysize;
static int want_blksize, want_window, timeout_ms;
static struct xfer slots[MAX_SLOTS];
static int epfd;

static double now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static void send_last(struct xfer *x) {
  if (x->tid_set) sendto(x->fd, x->pkt, x->pktlen, 0, (struct sockaddr *)&x->tid, sizeof x->tid);
  else sendto(x->fd, x->pkt, x->pktlen, 0, (struct sockaddr *)&server, sizeof server);
  x->last = now_ms();
}

static void ack(struct xfer *x, uint64_t block) {
  x->pkt[0] = 0;
  x->pkt[1] = 4;
  x->pkt[2] = (block >> 8) & 255;
  x->pkt[3] = block & 255;
  x->pktlen = 4;
  send_last(x);
}

static size_t put(unsigned char *p, const char *s) {
  size_t n = strlen(s) + 1;
  memcpy(p, s, n);
  return n;
}

static void start(struct xfer *x, int slot) {
  memset(x, 0, sizeof *x);
  x->fd = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK, 0);
  if (x->fd < 0) {
    perror("socket");
    exit(2);
  }
  struct epoll_event ev = {.events = EPOLLIN, .data.u32 = (uint32_t)slot};
  epoll_ctl(epfd, EPOLL_CTL_ADD, x->fd, &ev);
  x->active = 1;
  x->expected = 1;
  x->blksize = 512;
  x->window = 1;
  char num[32];
  size_t n = 0;
  x->pkt[n++] = 0;
  x->pkt[n++] = 1;
  n += put(x->pkt + n, file);
  n += put(x->pkt + n, "octet");
  if (want_blksize) {
    n += put(x->pkt + n, "blksize");
    snprintf(num, sizeof num, "%d", want_blksize);
    n += put(x->pkt + n, num);
  }
  n += put(x->pkt + n, "tsize");
  n += put(x->pkt + n, "0");
  if (want_window) {
    n += put(x->pkt + n, "windowsize");
    snprintf(num, sizeof num, "%d", want_window);
    n += put(x->pkt + n, num);
  }
  x->pktlen = n;
  x->t0 = now_ms();
  send_last(x);
}

static void end(struct xfer *x, const char *why) {
  if (why) printf("F %s\n", why);
  else printf("T %.3f %llu\n", now_ms() - x->t0, (unsigned long long)x->bytes);
  close(x->fd);
  x->active = 0;
}

/* OACK: the options granted (blksize, windowsize); anything not named stays at the default. */
static void oack(struct xfer *x, unsigned char *p, ssize_t len) {
  char *s = (char *)p + 2, *e = (char *)p + len;
  while (s < e) {
    char *name = s;
    char *v = memchr(s, 0, e - s);
    if (!v) break;
    v++;
    char *ve = memchr(v, 0, e - v);
    if (!ve) break;
    if (!strcasecmp(name, "blksize")) x->blksize = atoi(v);
    if (!strcasecmp(name, "windowsize")) x->window = atoi(v);
    s = ve + 1;
  }
}

/* One datagram for slot x; returns 1 when the transfer ended. */
static int on_packet(struct xfer *x, unsigned char *p, ssize_t len, struct sockaddr_in *from) {
  if (len < 4) return 0;
  if (!x->tid_set) {
    x->tid = *from;
    x->tid_set = 1;
  } else if (from->sin_port != x->tid.sin_port || from->sin_addr.s_addr != x->tid.sin_addr.s_addr) return 0;
  int op = p[1];
  if (p[0] != 0) return 0;
  if (op == 5) {
    char why[160];
    snprintf(why, sizeof why, "ERROR %d %.100s", p[3], p + 4);
    for (char *c = why; *c; c++)
      if (*c == '\n') *c = ' ';
    end(x, why);
    return 1;
  }
  if (op == 6) {
    if (x->expected != 1 || x->bytes) return 0;
    oack(x, p, len);
    x->retries = 0;
    ack(x, 0);
    return 0;
  }
  if (op != 3) return 0;
  unsigned block = (p[2] << 8) | p[3];
  size_t n = len - 4;
  if (block != (x->expected & 0xffff)) {
    /* windowed: a gap is reported once by acknowledging the last block received in order (RFC 7440) */
    if (x->window > 1 && x->reacked != x->expected) {
      x->reacked = x->expected;
      x->inwin = 0;
      ack(x, (x->expected - 1) & 0xffff);
    }
    return 0;
  }
  size_t off = (x->expected - 1) * (size_t)x->blksize;
  if (n > (size_t)x->blksize || off + n > copysize || memcmp(copy + off, p + 4, n) != 0) {
    end(x, "wrong data");
    return 1;
  }
  x->bytes += n;
  x->retries = 0;
  int last = n < (size_t)x->blksize;
  if (last && x->bytes != copysize) {
    end(x, "short file");
    return 1;
  }
  x->expected++;
  x->inwin++;
  if (last || x->inwin >= x->window) {
    x->inwin = 0;
    ack(x, (x->expected - 1) & 0xffff);
  } else x->last = now_ms();
  if (last) {
    end(x, NULL);
    return 1;
  }
  return 0;
}

int main(int argc, char **argv) {
  if (argc != 11) {
    fprintf(stderr, "usage: %s SERVER PORT FILE LOCAL_COPY BLKSIZE WINDOWSIZE CONCURRENCY TRANSFERS TIMEOUT_MS DEADLINE_S\n", argv[0]);
    return 2;
  }
  memset(&server, 0, sizeof server);
  server.sin_family = AF_INET;
  server.sin_port = htons(atoi(argv[2]));
  if (inet_pton(AF_INET, argv[1], &server.sin_addr) != 1) return 2;
  file = argv[3];
  int cfd = open(argv[4], O_RDONLY);
  struct stat st;
  if (cfd < 0 || fstat(cfd, &st) < 0) {
    perror(argv[4]);
    return 2;
  }
  copysize = st.st_size;
  copy = copysize ? mmap(NULL, copysize, PROT_READ, MAP_PRIVATE | MAP_POPULATE, cfd, 0) : (unsigned char *)"";
  if (copy == MAP_FAILED) return 2;
  want_blksize = atoi(argv[5]);
  want_window = atoi(argv[6]);
  int conc = atoi(argv[7]);
  int total = atoi(argv[8]);
  timeout_ms = atoi(argv[9]);
  double deadline = now_ms() + atof(argv[10]) * 1e3;
  if (conc < 1 || conc > MAX_SLOTS || total < 1) return 2;
  epfd = epoll_create1(0);
  int started = 0, ended = 0;
  double t0 = now_ms();
  for (int i = 0; i < conc && started < total; i++, started++) start(&slots[i], i);
  static unsigned char buf[65536];
  struct epoll_event evs[256];
  while (ended < total && now_ms() < deadline) {
    int n = epoll_wait(epfd, evs, 256, 5);
    for (int i = 0; i < n; i++) {
      int s = evs[i].data.u32;
      struct xfer *x = &slots[s];
      while (x->active) {
        struct sockaddr_in from;
        socklen_t fl = sizeof from;
        ssize_t len = recvfrom(x->fd, buf, sizeof buf, 0, (struct sockaddr *)&from, &fl);
        if (len < 0) {
          if (errno == ECONNREFUSED) {
            end(x, "port unreachable");
            ended++;
            if (started < total) start(x, s), started++;
          }
          break;
        }
        if (on_packet(x, buf, len, &from)) {
          ended++;
          if (started < total) start(x, s), started++;
          break;
        }
      }
    }
    double t = now_ms();
    for (int s = 0; s < conc; s++) {
      struct xfer *x = &slots[s];
      if (!x->active || t - x->last < timeout_ms) continue;
      if (++x->retries > MAX_RETRIES) {
        end(x, "timeout");
        ended++;
        if (started < total) start(x, s), started++;
      } else send_last(x);
    }
  }
  for (int s = 0; s < conc; s++)
    if (slots[s].active) end(&slots[s], "deadline");
  printf("W %.3f\n", now_ms() - t0);
  return 0;
}
