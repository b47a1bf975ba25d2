/* main.c - spanshim: dispatch to the commands, --help, --version. */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "runtime/resource.h"
#include "tools/spanshim/cli.h"

static const char usage[] =
    "usage: spanshim run [--out FILE] [--html REPORT.html] [--service NAME]\n"
    "                    [--endpoint ENDPOINT] [--quiet] [--no-color] [--wait-tree DUR]\n"
    "                    -- COMMAND [ARGS...]\n"
    "       spanshim view [FILTERS] [--json | --summary | --perfetto OUT | --html OUT]\n"
    "                     FILE...\n"
    "       spanshim --help | --version\n";

static const char help[] =
    "spanshim - OpenTelemetry traces for unmodified programs.\n"
    "\n"
    "Commands:\n"
    "  run   run COMMAND with libspanshim.so preloaded; its connects, DNS lookups,\n"
    "        libpq queries and libcurl transfers become spans. Without a collector,\n"
    "        spans go to a private spanshimd writing FILE, and the waterfall is\n"
    "        printed to stderr when the command ends. Exits with COMMAND's status.\n"
    "  view  print the waterfall of OTLP JSON lines files written by spanshimd, or\n"
    "        the traces matching --errors, --slower-than, --service, --trace, --grep;\n"
    "        as OTLP JSON (--json), a RED table (--summary), Perfetto JSON, or one\n"
    "        self-contained HTML report (--html).\n"
    "\n"
    "`spanshim COMMAND --help` describes each command's options.\n";

void ss__err(const char *fmt, ...) {
  va_list ap;
  fputs("spanshim: ", stderr);
  va_start(ap, fmt);
  vfprintf(stderr, fmt, ap);
  va_end(ap);
  fputc('\n', stderr);
}

int ss__usage_error(const char *cmd, const char *usage, const char *fmt, const char *arg) {
  fprintf(stderr, "spanshim: %s: ", cmd);
  fprintf(stderr, fmt, arg);
  fputc('\n', stderr);
  fputs(usage, stderr);
  return 2;
}

int main(int argc, char **argv) {
  if (argc < 2) {
    fputs(usage, stderr);
    return 2;
  }
  const char *cmd = argv[1];
  if (strcmp(cmd, "--help") == 0 || strcmp(cmd, "-h") == 0 || strcmp(cmd, "help") == 0) {
    printf("%s\n%s", usage, help);
    return 0;
  }
  if (strcmp(cmd, "--version") == 0 || strcmp(cmd, "-V") == 0 ||
      strcmp(cmd, "version") == 0) {
    printf("spanshim %s\n", SPANSHIM_VERSION);
    return 0;
  }
  if (strcmp(cmd, "run") == 0) return ss__cmd_run(argc - 1, argv + 1);
  if (strcmp(cmd, "view") == 0) return ss__cmd_view(argc - 1, argv + 1);
  ss__err("unknown command '%s'", cmd);
  fputs(usage, stderr);
  return 2;
}
