/*
 * commands.h: the subcommands of the cge tool. Each lives in tools/cmd_<name>.c and is listed
 * in the table in tools/cge.c. A command returns the process exit status (0 = success) and
 * prints errors as one line on stderr: "cge <cmd>: <what failed>".
 */
#ifndef CGE_COMMANDS_H
#define CGE_COMMANDS_H

int cmd_models(int argc, char **argv);
int cmd_cache(int argc, char **argv);
int cmd_tokenize(int argc, char **argv);
int cmd_inspect(int argc, char **argv);
int cmd_embed(int argc, char **argv);
int cmd_embed_engine(int argc, char **argv); /* cmd_embed without --model */
int cmd_fusion(int argc, char **argv);
int cmd_mcp(int argc, char **argv);

#endif
