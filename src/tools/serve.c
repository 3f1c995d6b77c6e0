/*
 * serve.c - `rotor serve CONFIG [--set section:key=value ...]`: the MPI job.
 */
#include <stdio.h>
#include <string.h>

#include "rotor/job.h"
#include "tools/tools.h"

int cmd_serve(int argc, char **argv)
{
    const char *config = NULL;
    char *overrides[64];
    int n_over = 0;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--set") == 0 && i + 1 < argc) {
            if (n_over == 64) {
                fprintf(stderr, "rotor serve: too many --set options (64 at most)\n");
                return 2;
            }
            overrides[n_over++] = argv[++i];
        } else if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            printf("usage: mpirun -np N rotor serve CONFIG.ini [--set section:key=value ...]\n"
                   "Starts the job: rank 0 serves the OpenAI API, the other ranks take the roles\n"
                   "of [roles]. `rotor --help-config` lists every key.\n");
            return 0;
        } else if (argv[i][0] != '-' && !config) {
            config = argv[i];
        } else {
            fprintf(stderr, "rotor serve: unknown argument '%s' (see rotor serve --help)\n", argv[i]);
            return 2;
        }
    }
    if (!config) {
        fprintf(stderr, "rotor serve: a config file is required (e.g. configs/local.ini)\n");
        return 2;
    }
    return job_serve(config, n_over, overrides);
}
