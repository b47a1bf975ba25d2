/* hash.h - moved to runtime/hash.h (one home, for the shim and the tools). */
#include "runtime/hash.h"
