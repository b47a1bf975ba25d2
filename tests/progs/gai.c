/* gai NAME [PORT [connect]]
 *
 * getaddrinfo(NAME, PORT, AF_UNSPEC, SOCK_STREAM), prints the return code, its EAI_* name
 * and each address; with `connect`, then makes a blocking TCP connect to each address in
 * turn until one succeeds, printing each result. Exit 0 on lookup success, else 1. */
#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static const char *eai_name(int rc) {
  switch (rc) {
    case 0: return "0";
    case EAI_NONAME: return "EAI_NONAME";
    case EAI_AGAIN: return "EAI_AGAIN";
    case EAI_FAIL: return "EAI_FAIL";
    case EAI_FAMILY: return "EAI_FAMILY";
    case EAI_SOCKTYPE: return "EAI_SOCKTYPE";
    case EAI_SERVICE: return "EAI_SERVICE";
    case EAI_MEMORY: return "EAI_MEMORY";
    case EAI_SYSTEM: return "EAI_SYSTEM";
#ifdef EAI_NODATA
    case EAI_NODATA: return "EAI_NODATA";
#endif
#ifdef EAI_ADDRFAMILY
    case EAI_ADDRFAMILY: return "EAI_ADDRFAMILY";
#endif
    default: return "EAI_?";
  }
}

int main(int argc, char **argv) {
  if (argc < 2) return 2;
  const char *port = argc > 2 ? argv[2] : NULL;
  struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM}, *res = NULL;
  int rc = getaddrinfo(argv[1], port, &hints, &res);
  printf("pid=%d\ngetaddrinfo=%d %s\n", (int)getpid(), rc, eai_name(rc));
  if (rc != 0) return 1;
  for (struct addrinfo *ai = res; ai; ai = ai->ai_next) {
    char host[INET6_ADDRSTRLEN] = "?";
    if (ai->ai_family == AF_INET)
      inet_ntop(AF_INET, &((struct sockaddr_in *)ai->ai_addr)->sin_addr, host, sizeof host);
    else if (ai->ai_family == AF_INET6)
      inet_ntop(AF_INET6, &((struct sockaddr_in6 *)ai->ai_addr)->sin6_addr, host, sizeof host);
    printf("addr=%s\n", host);
  }
  if (argc > 3 && !strcmp(argv[3], "connect")) {
    for (struct addrinfo *ai = res; ai; ai = ai->ai_next) {
      int fd = socket(ai->ai_family, ai->ai_socktype, ai->ai_protocol);
      int r = connect(fd, ai->ai_addr, ai->ai_addrlen);
      int e = errno;
      printf("connect=%d errno=%s\n", r, r ? strerrorname_np(e) : "0");
      close(fd);
      if (r == 0) break;
    }
  }
  freeaddrinfo(res);
  return 0;
}
