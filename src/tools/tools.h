/*
 * tools.h - subcommands of the `rotor` binary.
 */
#ifndef ROTOR_TOOLS_H
#define ROTOR_TOOLS_H

int cmd_generate(int argc, char **argv);
int cmd_tokenize(int argc, char **argv);
int cmd_chat_template(int argc, char **argv);
int cmd_bench_engine(int argc, char **argv);
int cmd_serve(int argc, char **argv);
int cmd_xfer_bench(int argc, char **argv);

#endif
