/* bad_args: calls the app may make with bad pointers or while other connects are pending,
 * printing what libc answered; the shim must answer the same and never crash.
 *   connect(s, (void *)8, 16) and accept(l, &a, (socklen_t *)8): EFAULT, no crash
 *   four non-blocking connects at once (three to a listener, one refused): each outcome
 * Prints one key=value line per call. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static int listener(struct sockaddr_in *a) {
  int l = socket(AF_INET, SOCK_STREAM, 0);
  *a = (struct sockaddr_in){.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  socklen_t al = sizeof *a;
  if (l < 0 || bind(l, (void *)a, sizeof *a) || listen(l, 16) || getsockname(l, (void *)a, &al))
    return -1;
  return l;
}

int main(int argc, char **argv) {
  int refused_port = argc > 1 ? atoi(argv[1]) : 1;
  int s = socket(AF_INET, SOCK_STREAM, 0);
  int rc = connect(s, (void *)8, 16);
  printf("connect_bad_addr=%d errno=%s\n", rc, rc ? strerrorname_np(errno) : "0");
  close(s);

  struct sockaddr_in a;
  int l = listener(&a);
  int c = socket(AF_INET, SOCK_STREAM, 0);
  connect(c, (void *)&a, sizeof a);
  struct sockaddr_in peer;
  rc = accept(l, (void *)&peer, (socklen_t *)8);
  printf("accept_bad_len=%d errno=%s\n", rc, rc < 0 ? strerrorname_np(errno) : "0");
  close(c);

  /* Four pending non-blocking connects: three succeed, one is refused. */
  int fds[4];
  for (int i = 0; i < 4; i++) {
    fds[i] = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    struct sockaddr_in to = a;
    if (i == 3) to.sin_port = htons((unsigned short)refused_port);
    rc = connect(fds[i], (void *)&to, sizeof to);
    printf("nb%d=%d errno=%s\n", i, rc, rc ? strerrorname_np(errno) : "0");
  }
  for (int i = 0; i < 4; i++) {
    struct pollfd p = {.fd = fds[i], .events = POLLOUT};
    poll(&p, 1, 2000);
    int err = 0;
    socklen_t el = sizeof err;
    getsockopt(fds[i], SOL_SOCKET, SO_ERROR, &err, &el);
    printf("nb%d_outcome=%s\n", i, err ? strerrorname_np(err) : "0");
    close(fds[i]);
  }
  close(l);
  return 0;
}
