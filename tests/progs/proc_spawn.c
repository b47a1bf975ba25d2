/* proc_spawn: runs children every way a C program can, printing what each returned:
 *   system("exit 5"), popen("echo popen-ok") read back, popen("cat > FILE") written to,
 *   posix_spawnp("sh", "-c", "exit 4"), fork + execlp("sh", ...) exiting 6,
 *   and system(NULL). Each child shell prints its TRACEPARENT to stdout when asked
 *   (argv[1] == "show"), so a test can see what was injected. */
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

int main(int argc, char **argv) {
  int show = argc > 1 && !strcmp(argv[1], "show");
  const char *tp = show ? "echo \"tp=$TRACEPARENT\"; " : "";
  char cmd[256];

  snprintf(cmd, sizeof cmd, "%sexit 5", tp);
  int st = system(cmd);
  printf("system=%d\n", WIFEXITED(st) ? WEXITSTATUS(st) : -1);
  fflush(stdout);

  snprintf(cmd, sizeof cmd, "%secho popen-ok", tp);
  FILE *f = popen(cmd, "r");
  char line[256];
  while (f && fgets(line, sizeof line, f)) printf("popen-read: %s", line);
  printf("pclose=%d\n", f ? WEXITSTATUS(pclose(f)) : -1);

  FILE *w = popen("cat", "w");
  fprintf(w, "popen-write-ok\n");
  fflush(stdout);
  printf("pclose-w=%d\n", WEXITSTATUS(pclose(w)));

  pid_t pid;
  snprintf(cmd, sizeof cmd, "%sexit 4", tp);
  char *sargv[] = {"sh", "-c", cmd, NULL};
  fflush(stdout);
  if (posix_spawnp(&pid, "sh", NULL, NULL, sargv, environ) == 0) {
    waitpid(pid, &st, 0);
    printf("posix_spawnp=%d\n", WEXITSTATUS(st));
  }
  fflush(stdout);
  pid = fork();
  if (pid == 0) {
    snprintf(cmd, sizeof cmd, "%sexit 6", tp);
    execlp("sh", "sh", "-c", cmd, (char *)NULL);
    _exit(127);
  }
  waitpid(pid, &st, 0);
  printf("fork-exec=%d\n", WEXITSTATUS(st));
  printf("system-null=%d\n", system(NULL) != 0);
  /* The shim builds each child's environment aside: ours is untouched. */
  const char *mine = getenv("TRACEPARENT");
  printf("parent-environ-tp=%s\n", mine ? mine : "(unset)");
  return 0;
}
