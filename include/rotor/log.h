/*
 * log.h - text logging for humans. Every line carries time, level, rank and
 * role ("[12:00:00.123 I r0 router] ..."). Numbers meant for analysis go to the
 * HDF5 log, not here.
 */
#ifndef ROTOR_LOG_H
#define ROTOR_LOG_H

typedef enum { RT_LOG_DEBUG = 0, RT_LOG_INFO, RT_LOG_WARN, RT_LOG_ERROR, RT_LOG_OFF } rt_log_level_t;

/* Set this process's rank and role shown on every line (role is copied). */
void rt_log_set_identity(int rank, const char *role);
void rt_log_set_level(rt_log_level_t level);
rt_log_level_t rt_log_get_level(void);
/* Parse "debug|info|warn|error|off"; returns -1 on unknown names. */
int rt_log_level_parse(const char *name);

void rt_log_write(rt_log_level_t level, const char *file, int line, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

#define RT_LOG_DEBUG(...) rt_log_write(RT_LOG_DEBUG, __FILE__, __LINE__, __VA_ARGS__)
#define RT_LOG_INFO(...) rt_log_write(RT_LOG_INFO, __FILE__, __LINE__, __VA_ARGS__)
#define RT_LOG_WARN(...) rt_log_write(RT_LOG_WARN, __FILE__, __LINE__, __VA_ARGS__)
#define RT_LOG_ERROR(...) rt_log_write(RT_LOG_ERROR, __FILE__, __LINE__, __VA_ARGS__)

#endif
