/* carrier.c - TRACEPARENT into a child's environment; see carrier.h. */
#include "hooks/carrier.h"

#include <string.h>
#include <unistd.h>

#include "hooks/hook.h"
#include "runtime/sys.h"

/* The socket, when the default one was worked out for another effective uid than ours
 * now: into c->ep (else "" there). */
static void carry_endpoint(ss__carrier *c) {
  c->ep[0] = '\0';
  const char *ep = ss__cfg.endpoint;
  if (!ss__tracing_on() || ss__cfg.default_socket_uid == (uid_t)-1 || ep == NULL ||
      strncmp(ep, "unix:", 5) != 0 || ss__sys_geteuid() == ss__cfg.default_socket_uid)
    return;
  size_t n = strlen(ep);
  if (sizeof SS_EP_VAR - 1 + n >= sizeof c->ep) return;
  memcpy(c->ep, SS_EP_VAR, sizeof SS_EP_VAR - 1);
  memcpy(c->ep + sizeof SS_EP_VAR - 1, ep, n + 1);
}

int ss__carrier_want(ss__carrier *c) {
  ss__ctx ctx;
  carry_endpoint(c);
  c->tp_on = ss__active(SS_HOOK_PROCESS) && (ss__cfg.propagators & SS_PROP_TRACECONTEXT) &&
             ss__ctx_current(&ctx);
  if (c->tp_on) {
    ss__process_ctx_shared();
    memcpy(c->tp, SS_TP_VAR, sizeof SS_TP_VAR - 1);
    ss__traceparent_format(&ctx, c->tp + sizeof SS_TP_VAR - 1);
  }
  return c->tp_on || c->ep[0] != '\0';
}

size_t ss__env_count(char *const *envp) {
  size_t n = 0;
  while (envp && envp[n]) n++;
  return n;
}

char **ss__carrier_env(char *const *envp, char **out, const ss__carrier *c) {
  size_t o = 0;
  int has_ep = 0;
  for (size_t i = 0; envp && envp[i]; i++) {
    if (c->tp_on && strncmp(envp[i], SS_TP_VAR, sizeof SS_TP_VAR - 1) == 0) continue;
    has_ep |= strncmp(envp[i], SS_EP_VAR, sizeof SS_EP_VAR - 1) == 0;
    out[o++] = envp[i];
  }
  if (c->tp_on) out[o++] = (char *)c->tp;
  if (c->ep[0] != '\0' && !has_ep) out[o++] = (char *)c->ep;
  out[o] = NULL;
  return out;
}
