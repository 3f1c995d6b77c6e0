/* job.c - placeholder until the job lands (being written). */
#include <stdio.h>

#include "rotor/job.h"

int job_serve(const char *config_path, int n_overrides, char **overrides)
{
    (void)n_overrides;
    (void)overrides;
    fprintf(stderr, "rotor serve %s: not built yet\n", config_path);
    return 1;
}
