/*
 * fz_tmp — where the fuzz harnesses put their private temporary directory:
 * $TMPDIR when set, else /dev/shm when writable (a tmpfs: the per-input
 * file writes and LevelDB's files cost no disk I/O there), else /tmp.
 */
#ifndef SM_FUZZ_FZ_TMP_H
#define SM_FUZZ_FZ_TMP_H

#include <stdlib.h>
#include <unistd.h>

static const char *fz_tmpdir(void)
{
    const char *tmp = getenv("TMPDIR");
    if (tmp && *tmp) return tmp;
    if (access("/dev/shm", W_OK | X_OK) == 0) return "/dev/shm";
    return "/tmp";
}

#endif
