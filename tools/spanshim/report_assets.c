/* report_assets.c - the HTML report's page, script and style (tools/spanshim/report/),
 * built into the binary with the assembler's .incbin, each followed by a NUL. The
 * Makefile names these files as this object's prerequisites. */
#include "tools/spanshim/html.h"

#define SS_INCBIN(sym, file)                                                         \
  __asm__(".section .rodata\n.global " #sym "\n.hidden " #sym "\n.type " #sym        \
          ", @object\n.balign 16\n" #sym ":\n.incbin \"" file "\"\n.byte 0\n.size " #sym \
          ", . - " #sym "\n.previous\n")

SS_INCBIN(ss__report_html, "tools/spanshim/report/report.html");
SS_INCBIN(ss__report_js, "tools/spanshim/report/report.js");
SS_INCBIN(ss__report_css, "tools/spanshim/report/report.css");
