/* beside.h - where spanshimd puts one signal's file next to another's: the default
 * --logs-out and --metrics-out beside --out, and where `spanshim view` looks for the logs
 * of a traces file. Not thread-safe (static buffers, two in turn). */
#ifndef SS_BESIDE_H
#define SS_BESIDE_H

/* The default path of another signal's file beside `out`, in a static buffer: "traces" in
 * the file name replaced by `signal` ("logs", "metrics"), else ".<signal>" inserted
 * before the extension (spans.jsonl → spans.logs.jsonl); a path that exists and is not a
 * regular file (/dev/null, a FIFO) is returned as is. */
const char *ss__beside(const char *out, const char *signal);

#endif
