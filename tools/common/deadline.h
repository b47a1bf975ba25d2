/* deadline.h - moved to runtime/deadline.h (one home, for the shim and the tools). */
#include "runtime/deadline.h"
