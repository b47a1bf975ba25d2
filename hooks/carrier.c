/* carrier.c - TRACEPARENT into a child's environment; see carrier.h. */
#include "hooks/carrier.h"

#include <string.h>

#include "hooks/hook.h"

int ss__carrier_want(ss__carrier *c) {
  ss__ctx ctx;
  if (!ss__active(SS_HOOK_PROCESS) || !(ss__cfg.propagators & SS_PROP_TRACECONTEXT) ||
      !ss__ctx_current(&ctx))
    return 0;
  ss__process_ctx_shared();
  memcpy(c->tp, SS_TP_VAR, sizeof SS_TP_VAR - 1);
  ss__traceparent_format(&ctx, c->tp + sizeof SS_TP_VAR - 1);
  return 1;
}

size_t ss__env_count(char *const *envp) {
  size_t n = 0;
  while (envp && envp[n]) n++;
  return n;
}

char **ss__carrier_env(char *const *envp, char **out, const ss__carrier *c) {
  size_t o = 0;
  for (size_t i = 0; envp && envp[i]; i++)
    if (strncmp(envp[i], SS_TP_VAR, sizeof SS_TP_VAR - 1) != 0) out[o++] = envp[i];
  out[o++] = (char *)c->tp;
  out[o] = NULL;
  return out;
}
