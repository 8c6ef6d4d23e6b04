// SPDX-License-Identifier: GPL-2.0
/*
 * SysV shared memory for fio in the test kernel, which has no CONFIG_SYSVIPC (shmget is ENOSYS).
 * fio keeps its per-job bookkeeping (thread_data) in one shmget(IPC_PRIVATE) segment and fails
 * to start without it; nothing of its I/O path uses it. Preloaded into fio by the loader
 * (`--preload`, see fio_run in qemu/jobs/lib.sh): a private segment becomes a shared anonymous
 * mapping, which a forked job shares as it would a SysV segment. Built on the host by
 * `scripts/vm --fio`.
 */
#include <errno.h>
#include <pthread.h>
#include <stddef.h>
#include <sys/mman.h>
#include <sys/shm.h>

#define SEGMENTS 64

static struct segment {
	void *addr;
	size_t len;
	int attached;
	int removed;
} seg[SEGMENTS];
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;

/* Frees a segment that is both detached and removed. Called with the lock held. */
static void release(struct segment *s)
{
	if (s->addr && !s->attached && s->removed) {
		munmap(s->addr, s->len);
		s->addr = NULL;
	}
}

int shmget(key_t key, size_t size, int flags)
{
	void *p;
	int i;

	(void)flags;
	if (key != IPC_PRIVATE || size == 0) {
		errno = EINVAL;
		return -1;
	}
	p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED) {
		errno = ENOMEM;
		return -1;
	}
	pthread_mutex_lock(&lock);
	for (i = 0; i < SEGMENTS && seg[i].addr; i++)
		;
	if (i < SEGMENTS)
		seg[i] = (struct segment){ .addr = p, .len = size };
	pthread_mutex_unlock(&lock);
	if (i == SEGMENTS) {
		munmap(p, size);
		errno = ENOSPC;
		return -1;
	}
	return i;
}

void *shmat(int id, const void *addr, int flags)
{
	void *p = NULL;

	(void)flags;
	pthread_mutex_lock(&lock);
	if (id >= 0 && id < SEGMENTS && seg[id].addr && !addr && !seg[id].removed) {
		seg[id].attached++;
		p = seg[id].addr;
	}
	pthread_mutex_unlock(&lock);
	if (!p) {
		errno = EINVAL;
		return (void *)-1;
	}
	return p;
}

int shmdt(const void *addr)
{
	int i, ret = -1;

	pthread_mutex_lock(&lock);
	for (i = 0; i < SEGMENTS; i++) {
		if (seg[i].addr && seg[i].addr == addr && seg[i].attached) {
			seg[i].attached--;
			release(&seg[i]);
			ret = 0;
			break;
		}
	}
	pthread_mutex_unlock(&lock);
	if (ret)
		errno = EINVAL;
	return ret;
}

int shmctl(int id, int cmd, struct shmid_ds *buf)
{
	int ret = -1;

	(void)buf;
	pthread_mutex_lock(&lock);
	if (cmd == IPC_RMID && id >= 0 && id < SEGMENTS && seg[id].addr) {
		seg[id].removed = 1;
		release(&seg[id]);
		ret = 0;
	}
	pthread_mutex_unlock(&lock);
	if (ret)
		errno = EINVAL;
	return ret;
}
