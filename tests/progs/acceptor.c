/* acceptor: a TCP server on 127.0.0.1 (ephemeral port) that accepts 3 connections from a
 * client thread in the same process: the first with accept(), the other two with
 * accept4(). Before any client connects it also tries a non-blocking accept4
 * and accept, which fail with EAGAIN (no span expected). Prints server_port=, then for each accepted connection
 * accepted=N peer_port=P, and the client's local ports as client_port=P. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static struct sockaddr_in srv;
static int client_ports[3];

static void *client(void *arg) {
  (void)arg;
  for (int i = 0; i < 3; i++) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (connect(fd, (struct sockaddr *)&srv, sizeof srv) != 0) {
      perror("connect");
      continue;
    }
    struct sockaddr_in me;
    socklen_t l = sizeof me;
    getsockname(fd, (struct sockaddr *)&me, &l);
    client_ports[i] = ntohs(me.sin_port);
    char c;
    (void)!read(fd, &c, 1); /* wait for the server to close */
    close(fd);
  }
  return NULL;
}

int main(void) {
  int ls = socket(AF_INET, SOCK_STREAM, 0);
  srv.sin_family = AF_INET;
  srv.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (bind(ls, (struct sockaddr *)&srv, sizeof srv) || listen(ls, 16)) {
    perror("bind/listen");
    return 1;
  }
  socklen_t sl = sizeof srv;
  getsockname(ls, (struct sockaddr *)&srv, &sl);
  printf("pid=%d\nserver_port=%d\n", (int)getpid(), ntohs(srv.sin_port));

  /* With the listener non-blocking and nobody connecting: EAGAIN, which makes no span. */
  int fl = fcntl(ls, F_GETFL);
  fcntl(ls, F_SETFL, fl | O_NONBLOCK);
  errno = 0;
  int r = accept4(ls, NULL, NULL, SOCK_CLOEXEC);
  printf("nonblocking_accept4=%d errno=%s\n", r, r < 0 ? strerrorname_np(errno) : "0");
  errno = 0;
  r = accept(ls, NULL, NULL);
  printf("nonblocking_accept=%d errno=%s\n", r, r < 0 ? strerrorname_np(errno) : "0");
  fcntl(ls, F_SETFL, fl);

  pthread_t t;
  pthread_create(&t, NULL, client, NULL);
  for (int i = 0; i < 3; i++) {
    struct sockaddr_in peer;
    socklen_t pl = sizeof peer;
    int c = i == 0 ? accept(ls, (struct sockaddr *)&peer, &pl)
                   : accept4(ls, (struct sockaddr *)&peer, &pl, SOCK_CLOEXEC);
    if (c < 0) {
      perror("accept");
      return 1;
    }
    printf("accepted=%d peer_port=%d\n", i + 1, ntohs(peer.sin_port));
    close(c);
  }
  pthread_join(t, NULL);
  for (int i = 0; i < 3; i++) printf("client_port=%d\n", client_ports[i]);
  close(ls);
  return 0;
}
