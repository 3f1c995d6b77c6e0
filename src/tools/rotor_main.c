/*
 * rotor_main.c - the `rotor` binary: one entry point, subcommands.
 *   rotor serve CONFIG        the MPI job (mpirun -np N rotor serve ...)
 *   rotor generate ...        single-process generation (no MPI)
 *   rotor tokenize ...        tokenizer ids for a text
 *   rotor chat-template ...   render chat messages with the model's template
 *   rotor --help-config       every configuration key with default and doc
 */
#include <stdio.h>
#include <string.h>

#include "rotor/config.h"
#include "tools/tools.h"

#define ROTOR_VERSION "0.1.0"

static void usage(FILE *f)
{
    fprintf(f,
            "rotor %s - distributed LLM inference server\n\n"
            "usage:\n"
            "  mpirun -np N rotor serve CONFIG.ini [--set section:key=value ...]\n"
            "  rotor generate --model FILE --prompt TEXT [-n N] [--temp T] [--seed S] [--threads N] [--json]\n"
            "  rotor tokenize --model FILE --text TEXT [--json]\n"
            "  rotor chat-template --model FILE --messages-json FILE\n"
            "  mpirun -np 2 rotor xfer-bench [--bytes N,M,...] [--reps R]\n"
            "  rotor bench-engine --model FILE [--seqs 1,4,16,64] [--prefix-tokens 1024]\n"
            "  rotor --help-config [--markdown]\n"
            "  rotor --version\n\n"
            "`rotor generate --help` lists every generation option.\n",
            ROTOR_VERSION);
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    const char *cmd = argv[1];
    if (strcmp(cmd, "serve") == 0) return cmd_serve(argc - 1, argv + 1);
    if (strcmp(cmd, "generate") == 0) return cmd_generate(argc - 1, argv + 1);
    if (strcmp(cmd, "tokenize") == 0) return cmd_tokenize(argc - 1, argv + 1);
    if (strcmp(cmd, "chat-template") == 0) return cmd_chat_template(argc - 1, argv + 1);
    if (strcmp(cmd, "bench-engine") == 0) return cmd_bench_engine(argc - 1, argv + 1);
    if (strcmp(cmd, "xfer-bench") == 0) return cmd_xfer_bench(argc - 1, argv + 1);
    if (strcmp(cmd, "--help-config") == 0) {
        cfg_print_help(stdout, argc > 2 && strcmp(argv[2], "--markdown") == 0);
        return 0;
    }
    if (strcmp(cmd, "--version") == 0) {
        printf("rotor %s\n", ROTOR_VERSION);
        return 0;
    }
    if (strcmp(cmd, "--help") == 0 || strcmp(cmd, "-h") == 0) {
        usage(stdout);
        return 0;
    }
    fprintf(stderr, "rotor: unknown command '%s'\n", cmd);
    usage(stderr);
    return 2;
}
