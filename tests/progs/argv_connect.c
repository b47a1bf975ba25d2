/* argv_connect: stands in for a client whose command line carries credentials (redis-cli
 * -a, mysql -p, sshpass -p, docker login -p...): run through a symlink named after that
 * tool, it ignores its arguments, connects to 127.0.0.1:$ARGV_CONNECT_PORT (when set) and
 * exits 0. Only its argv matters: the process span's process.command_args. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

int main(void) {
  const char *port = getenv("ARGV_CONNECT_PORT");
  if (port == NULL) return 0;
  int s = socket(AF_INET, SOCK_STREAM, 0);
  if (s < 0) return 1;
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((unsigned short)atoi(port))};
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  int rc = connect(s, (struct sockaddr *)&a, sizeof a);
  close(s);
  return rc == 0 ? 0 : 2;
}
