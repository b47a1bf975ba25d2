/* hostport.h - moved to runtime/hostport.h (one home, for the shim and the tools). */
#include "runtime/hostport.h"
