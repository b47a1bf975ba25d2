/* edge DIR: socket calls at their edges, each result printed (return value and errno
 * name), so a run under the shim can be compared byte for byte with a plain run:
 *   errno left alone by successful calls (set to EDOM first);
 *   bad fd, NULL or short address, AF_UNSPEC (dissolving a UDP association), a netlink
 *   socket; a pathname Unix address passed without its terminating NUL (addrlen exact,
 *   junk after it) and an abstract one; getaddrinfo with a NULL node and NULL hints;
 *   accept on a non-socket and accept4 with bad flags; accept interrupted by a signal
 *   (EINTR: no span). Prints unix_path= for the test. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/netlink.h>
#include <netdb.h>
#include <netinet/in.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>

static const char *en(int e) { return e ? strerrorname_np(e) : "0"; }
#define SHOW(label, expr)                                        \
  do {                                                           \
    errno = EDOM;                                                \
    long r_ = (long)(expr);                                      \
    int e_ = errno;                                              \
    printf("%s=%ld errno=%s\n", label, r_ < 0 ? r_ : (r_ > 0 ? 1L : 0L), en(e_)); \
  } while (0)

static void on_alarm(int s) { (void)s; }

int main(int argc, char **argv) {
  if (argc < 2) return 2;
  printf("pid=%d\n", (int)getpid());
  struct sockaddr_in lo = {.sin_family = AF_INET, .sin_port = htons(9)};
  lo.sin_addr.s_addr = htonl(INADDR_LOOPBACK);

  int u = socket(AF_INET, SOCK_DGRAM, 0);
  SHOW("udp_connect_ok", connect(u, (struct sockaddr *)&lo, sizeof lo));
  struct sockaddr unspec = {.sa_family = AF_UNSPEC};
  SHOW("udp_connect_unspec", connect(u, &unspec, sizeof unspec));
  SHOW("connect_null_addr", connect(u, NULL, sizeof lo));
  SHOW("connect_short_len", connect(u, (struct sockaddr *)&lo, 3));
  SHOW("connect_bad_fd", connect(-1, (struct sockaddr *)&lo, sizeof lo));
  int devnull = open("/dev/null", O_RDONLY);
  SHOW("connect_not_socket", connect(devnull, (struct sockaddr *)&lo, sizeof lo));
  close(u);

  int nl = socket(AF_NETLINK, SOCK_RAW, NETLINK_ROUTE);
  struct sockaddr_nl nla = {.nl_family = AF_NETLINK};
  SHOW("netlink_connect", nl < 0 ? -1 : connect(nl, (struct sockaddr *)&nla, sizeof nla));
  if (nl >= 0) close(nl);

  /* A pathname Unix address without its NUL: addrlen covers exactly the path. */
  char path[100];
  snprintf(path, sizeof path, "%s/e.sock", argv[1]);
  struct sockaddr_un un;
  memset(&un, 'Z', sizeof un);
  un.sun_family = AF_UNIX;
  memcpy(un.sun_path, path, strlen(path));
  socklen_t ulen = offsetof(struct sockaddr_un, sun_path) + strlen(path);
  int ls = socket(AF_UNIX, SOCK_STREAM, 0);
  SHOW("unix_bind", bind(ls, (struct sockaddr *)&un, ulen));
  listen(ls, 4);
  int c = socket(AF_UNIX, SOCK_STREAM, 0);
  SHOW("unix_connect_no_nul", connect(c, (struct sockaddr *)&un, ulen));
  printf("unix_path=%s\n", path);
  close(c);

  /* Abstract namespace. */
  struct sockaddr_un ab = {.sun_family = AF_UNIX};
  const char aname[] = "spanshim-edge-abstract";
  memcpy(ab.sun_path + 1, aname, sizeof aname - 1);
  socklen_t alen = offsetof(struct sockaddr_un, sun_path) + 1 + sizeof aname - 1;
  int als = socket(AF_UNIX, SOCK_STREAM, 0);
  char an[64];
  snprintf(an, sizeof an, "%s-%d", aname, (int)getpid());
  memcpy(ab.sun_path + 1, an, strlen(an));
  alen = offsetof(struct sockaddr_un, sun_path) + 1 + strlen(an);
  SHOW("abstract_bind", bind(als, (struct sockaddr *)&ab, alen));
  listen(als, 4);
  int ac = socket(AF_UNIX, SOCK_STREAM, 0);
  SHOW("abstract_connect", connect(ac, (struct sockaddr *)&ab, alen));
  close(ac);
  close(als);

  struct addrinfo *res = NULL;
  struct addrinfo passive = {.ai_flags = AI_PASSIVE, .ai_socktype = SOCK_STREAM};
  SHOW("gai_null_node", getaddrinfo(NULL, "80", &passive, &res));
  if (res) freeaddrinfo(res);
  res = NULL;
  SHOW("gai_null_hints", getaddrinfo("localhost", NULL, NULL, &res));
  if (res) freeaddrinfo(res);
  res = NULL;
  SHOW("gai_bad_service", getaddrinfo("localhost", "no-such-service-xyz", &passive, &res));
  if (res) freeaddrinfo(res);

  SHOW("accept_not_socket", accept(devnull, NULL, NULL));
  SHOW("accept4_bad_flags", accept4(ls, NULL, NULL, 0x7fff0000));
  SHOW("accept_bad_fd", accept(-1, NULL, NULL));

  SHOW("unix_accept", accept(ls, NULL, NULL));

  /* Blocking accept interrupted by SIGALRM (no SA_RESTART): EINTR, no span. */
  struct sigaction sa = {.sa_handler = on_alarm};
  sigaction(SIGALRM, &sa, NULL);
  struct itimerval it = {.it_value = {0, 100000}};
  setitimer(ITIMER_REAL, &it, NULL);
  SHOW("accept_eintr", accept(ls, NULL, NULL));
  close(ls);
  unlink(path);
  close(devnull);
  return 0;
}
