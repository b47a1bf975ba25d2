/* shim.h - the preload entry (shim/): lazy once-only init, constructor/destructor, fork
 * handlers, and resolution of the real functions (shim/resolve.c).
 *
 * The entry defines what hooks/hook.h declares (ss__init_state, ss__cfg, ss__pid,
 * ss__init, ss__dlsym_next, ss__dlsym_lib, ss__missing_errno) and calls into the hooks
 * (process span start, fork-child resets, exit); every interposed function lives under
 * hooks/. Hook files include hooks/hook.h, not this header. */
#ifndef SS_SHIM_H
#define SS_SHIM_H

#include "hooks/hook.h"

#endif
