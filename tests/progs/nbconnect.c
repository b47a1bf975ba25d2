/* nbconnect HOST PORT sockopt|write|read|close|exit|_exit|term|exec [DELAY_MS]
 *
 * Non-blocking TCP connect: socket(O_NONBLOCK), connect (EINPROGRESS expected), sleeps
 * DELAY_MS (default 100), then learns the outcome by poll + getsockopt(SO_ERROR)
 * (`sockopt`), by a first write or read on the fd, or not at all before close (`close`).
 * `exit`, `_exit`, `term` (raise(SIGTERM), default action) and `exec` (execs /bin/true)
 * end the process or its image with the connect still parked, never closing the fd.
 * Prints every return value and errno name, so runs with and without the shim can be
 * compared byte for byte. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static const char *en(int e) { return e ? strerrorname_np(e) : "0"; }

int main(int argc, char **argv) {
  if (argc < 4) {
    fprintf(stderr, "usage: nbconnect HOST PORT sockopt|write|read|close [DELAY_MS]\n");
    return 2;
  }
  const char *how = argv[3];
  int delay = argc > 4 ? atoi(argv[4]) : 100;
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(atoi(argv[2]))};
  inet_pton(AF_INET, argv[1], &a.sin_addr);
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
  errno = 0;
  int r = connect(fd, (struct sockaddr *)&a, sizeof a);
  printf("connect=%d errno=%s\n", r, r ? en(errno) : "0");
  usleep(delay * 1000);
  if (!strcmp(how, "sockopt")) {
    struct pollfd p = {.fd = fd, .events = POLLOUT};
    r = poll(&p, 1, 5000);
    printf("poll=%d revents=%s%s%s\n", r, p.revents & POLLOUT ? "OUT" : "",
           p.revents & POLLERR ? "|ERR" : "", p.revents & POLLHUP ? "|HUP" : "");
    int err = -1;
    socklen_t l = sizeof err;
    errno = 0;
    r = getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &l);
    printf("getsockopt=%d so_error=%s\n", r, en(err));
    /* A second SO_ERROR read: the error was consumed by the first. */
    err = -1;
    r = getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &l);
    printf("getsockopt2=%d so_error=%s\n", r, en(err));
  } else if (!strcmp(how, "write")) {
    errno = 0;
    ssize_t w = write(fd, "x", 1);
    printf("write=%zd errno=%s\n", w, w < 0 ? en(errno) : "0");
  } else if (!strcmp(how, "exit") || !strcmp(how, "_exit") || !strcmp(how, "term") ||
             !strcmp(how, "exec")) {
    fflush(stdout);
    if (!strcmp(how, "exit")) exit(0);
    if (!strcmp(how, "_exit")) _exit(0);
    if (!strcmp(how, "term")) raise(SIGTERM);
    execl("/bin/true", "true", (char *)NULL);
    return 127;
  } else if (!strcmp(how, "read")) {
    char c;
    errno = 0;
    ssize_t n = read(fd, &c, 1);
    printf("read=%zd errno=%s\n", n, n < 0 ? en(errno) : "0");
  }
  errno = 0;
  r = close(fd);
  printf("close=%d errno=%s\n", r, r ? en(errno) : "0");
  return 0;
}
