/*
 * isorun-agent's entry points:
 *
 *   isorun-agent launch SOCKET -- KEEPALIVE...   a sandbox's main process (under its init): starts the
 *                                                agent in the background, then becomes KEEPALIVE (the
 *                                                image's `sleep`)
 *   isorun-agent start SOCKET                    starts the agent in the background and returns (run
 *                                                through the engine's exec when it is missing)
 *   isorun-agent serve SOCKET                    the agent in the foreground (tests)
 *   isorun-agent version                         prints the protocol version
 *
 * In the background the agent is re-parented to the sandbox's init: killing it never stops the sandbox,
 * and its processes are part of the sandbox's process tree, which is what a checkpoint captures.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "agent.h"

static void usage(void) {
  fputs("usage: isorun-agent launch SOCKET -- KEEPALIVE... | start SOCKET | serve SOCKET | version\n", stderr);
  exit(2);
}

/* Points stdin, stdout and stderr at /dev/null. Started through the engine's exec, they are pipes to
 * the engine's shim, outside the sandbox: CRIU refuses to checkpoint a process holding them. */
static void detach_stdio(void) {
  int null = open("/dev/null", O_RDWR | O_CLOEXEC);
  if (null < 0) return;
  for (int fd = 0; fd <= 2; fd++) dup2(null, fd);
  if (null > 2) close(null);
}

/* Forks the agent off twice (a new session, then a grandchild the caller's init adopts). Returns in
 * the caller once the middle process has gone; never returns in the agent. */
static void background(const char *socket_path, bool own_stdio) {
  pid_t middle = fork();
  if (middle < 0) {
    warnx_("cannot start: fork: %s", strerror(errno));
    return;
  }
  if (middle == 0) {
    setsid();
    pid_t agent = fork();
    if (agent == 0) {
      if (!own_stdio) detach_stdio();
      exit(serve(socket_path));
    }
    _exit(agent < 0 ? 1 : 0);
  }
  while (waitpid(middle, NULL, 0) < 0 && errno == EINTR) {
  }
}

int main(int argc, char **argv) {
  if (argc == 2 && strcmp(argv[1], "version") == 0) {
    printf("isorun-agent protocol %d\n", PROTOCOL_VERSION);
    return 0;
  }
  if (argc == 3 && strcmp(argv[1], "serve") == 0) return serve(argv[2]);
  if (argc == 3 && strcmp(argv[1], "start") == 0) {
    background(argv[2], false);
    return 0;
  }
  if (argc >= 5 && strcmp(argv[1], "launch") == 0 && strcmp(argv[3], "--") == 0) {
    /* The main process's stdio is the sandbox's log, which checkpoints know how to handle. */
    background(argv[2], true);
    execvp(argv[4], argv + 4);
    /* The keep-alive cannot run (no `sleep` in the image, or credentials that change PATH): the sandbox
     * ends, as it would without the agent, and the emulator refuses the create saying why. */
    fprintf(stderr, "%s: %s\n", argv[4], strerror(errno));
    return 127;
  }
  usage();
}
