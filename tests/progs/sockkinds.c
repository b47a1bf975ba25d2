/* sockkinds DIR: one connect of each kind the shim distinguishes by transport:
 *   unix  stream connect to DIR/kinds.sock (a listener in this process); prints unix_path=
 *   udp   UDP connect to 127.0.0.1:9
 *   udp6  UDP connect to [::1]:9 (prints udp6=-1 when the host has no IPv6 loopback)
 *   tcp6  TCP connect to [::1]:PORT of a bound, not listening, socket (refused)
 * Prints each result. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

static const char *en(int r, int e) { return r ? strerrorname_np(e) : "0"; }

int main(int argc, char **argv) {
  if (argc < 2) return 2;
  printf("pid=%d\n", (int)getpid());
  struct sockaddr_un un = {.sun_family = AF_UNIX};
  snprintf(un.sun_path, sizeof un.sun_path, "%s/kinds.sock", argv[1]);
  unlink(un.sun_path);
  int ls = socket(AF_UNIX, SOCK_STREAM, 0);
  if (bind(ls, (struct sockaddr *)&un, sizeof un) || listen(ls, 4)) {
    perror("unix bind/listen");
    return 1;
  }
  int c = socket(AF_UNIX, SOCK_STREAM, 0);
  int r = connect(c, (struct sockaddr *)&un, sizeof un);
  printf("unix_path=%s\nunix=%d errno=%s\n", un.sun_path, r, en(r, errno));
  close(c);
  close(ls);
  unlink(un.sun_path);

  struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(9)};
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  int u = socket(AF_INET, SOCK_DGRAM, 0);
  r = connect(u, (struct sockaddr *)&a, sizeof a);
  printf("udp=%d errno=%s\n", r, en(r, errno));
  close(u);

  struct sockaddr_in6 a6 = {.sin6_family = AF_INET6, .sin6_port = htons(9)};
  a6.sin6_addr = in6addr_loopback;
  int u6 = socket(AF_INET6, SOCK_DGRAM, 0);
  r = u6 < 0 ? -1 : connect(u6, (struct sockaddr *)&a6, sizeof a6);
  printf("udp6=%d errno=%s\n", r, en(r, errno));
  if (u6 >= 0) close(u6);

  int h6 = socket(AF_INET6, SOCK_STREAM, 0);
  struct sockaddr_in6 b6 = {.sin6_family = AF_INET6};
  b6.sin6_addr = in6addr_loopback;
  if (h6 >= 0 && bind(h6, (struct sockaddr *)&b6, sizeof b6) == 0) {
    socklen_t l = sizeof b6;
    getsockname(h6, (struct sockaddr *)&b6, &l);
    int t6 = socket(AF_INET6, SOCK_STREAM, 0);
    r = connect(t6, (struct sockaddr *)&b6, sizeof b6);
    printf("tcp6_port=%d\ntcp6=%d errno=%s\n", ntohs(b6.sin6_port), r, en(r, errno));
    close(t6);
  } else {
    printf("tcp6=-1 errno=unavailable\n");
  }
  if (h6 >= 0) close(h6);
  return 0;
}
