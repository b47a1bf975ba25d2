/* popen_many N: opens N popen streams at once (even i: "r", `echo line-i; exit i%7`;
 * odd i: "w", the child reads one line and exits i%5), writes and reads them, then closes
 * every stream with fclose (never pclose). Prints each stream's line and fclose's result
 * (exit code), then how many children were still left to reap: fclose of a popen stream
 * waits for its child, so none should be. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

int main(int argc, char **argv) {
  int n = argc > 1 ? atoi(argv[1]) : 100;
  FILE **fs = calloc((size_t)n, sizeof *fs);
  char cmd[128];
  for (int i = 0; i < n; i++) {
    if (i % 2 == 0)
      snprintf(cmd, sizeof cmd, "echo line-%d; exit %d", i, i % 7);
    else
      snprintf(cmd, sizeof cmd, "read x; [ \"$x\" = in-%d ] || exit 99; exit %d", i, i % 5);
    fs[i] = popen(cmd, i % 2 == 0 ? "r" : "w");
    if (fs[i] == NULL) {
      printf("popen %d failed: %s\n", i, strerror(errno));
      return 1;
    }
  }
  for (int i = 0; i < n; i++) {
    char line[64] = "";
    if (i % 2 == 0) {
      if (fgets(line, sizeof line, fs[i]) == NULL) strcpy(line, "(none)\n");
    } else {
      fprintf(fs[i], "in-%d\n", i);
      strcpy(line, "wrote\n");
    }
    int st = fclose(fs[i]);
    printf("%d %s", i, line);
    printf("%d status=%d\n", i, st >= 0 && WIFEXITED(st) ? WEXITSTATUS(st) : -1);
  }
  int left = 0;
  while (waitpid(-1, NULL, WNOHANG) > 0) left++;
  printf("left=%d\n", left);
  free(fs);
  return 0;
}
