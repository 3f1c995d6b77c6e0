/*
 * log.c - line-oriented text log to stderr with rank and role on every line.
 * One fprintf per line (stdio locks the stream) so lines from threads do not
 * interleave.
 */
#include "rotor/log.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>

static int log_rank = 0;
static char log_role[32] = "main";
static rt_log_level_t log_level = RT_LOG_INFO;

void rt_log_set_identity(int rank, const char *role)
{
    log_rank = rank;
    snprintf(log_role, sizeof log_role, "%s", role ? role : "?");
}

void rt_log_set_level(rt_log_level_t level) { log_level = level; }
rt_log_level_t rt_log_get_level(void) { return log_level; }

int rt_log_level_parse(const char *name)
{
    static const char *names[] = {"debug", "info", "warn", "error", "off"};
    for (int i = 0; i < 5; i++)
        if (name && strcasecmp(name, names[i]) == 0) return i;
    return -1;
}

void rt_log_write(rt_log_level_t level, const char *file, int line, const char *fmt, ...)
{
    if (level < log_level || level >= RT_LOG_OFF) return;
    static const char lc[] = "DIWE";
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    struct tm tm;
    gmtime_r(&ts.tv_sec, &tm);
    const char *base = strrchr(file, '/');
    base = base ? base + 1 : file;
    /* one write per line: ranks share a terminal through mpirun */
    char out[1280];
    int n = snprintf(out, sizeof out, "[%02d:%02d:%02d.%03ld %c r%d %s] %s", tm.tm_hour, tm.tm_min, tm.tm_sec,
                     ts.tv_nsec / 1000000, lc[level], log_rank, log_role, msg);
    if (n < 0) return;
    if ((size_t)n >= sizeof out - 64) n = (int)(sizeof out - 64);
    if (level >= RT_LOG_WARN) n += snprintf(out + n, sizeof out - (size_t)n, " (%s:%d)", base, line);
    if ((size_t)n >= sizeof out - 1) n = (int)(sizeof out - 2);
    out[n++] = '\n';
    fwrite(out, 1, (size_t)n, stderr);
}
