/* membrane-pause: the lab's pod sandbox process in one exec (issue 16).
 *
 * Usage: membrane-pause NETNS HOSTNAME READY_FD
 *
 * What the runtime used to do with six execs per pod (`ip netns add`, then `ip netns exec` -> `unshare
 * --uts` -> `sh` -> `hostname` -> `sleep infinity`), done here with system calls, in the same order and
 * with the same result:
 *   1. the network namespace: joined when /run/netns/NETNS exists (a retried start), else created and
 *      bind-mounted there as `ip netns add` does (/run/netns made a shared mount first, so later mounts
 *      and unmounts propagate into the namespaces of other `ip netns exec` users);
 *   2. its own UTS namespace with the pod's hostname;
 *   3. its own mount namespace as `ip netns exec` makes it: / made a recursive slave, a fresh sysfs on
 *      /sys (so it shows the pod's devices), and every file of /etc/netns/NETNS bound over /etc/<name>
 *      (resolv.conf, hosts); containers join it with nsenter --mount. Unlike ip netns exec's short-lived
 *      namespaces it also drops its copy of /run/netns (every pod's netns mount; see mount_namespace);
 *   4. one byte written to READY_FD (then closed): the sandbox is set up. Any failure exits non-zero
 *      with a message on stderr (the pod's log) before that byte, so the runtime sees EOF instead.
 * Then it sleeps until a signal ends it (SIGTERM's default action, like `sleep infinity`).
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#define NETNS_RUN_DIR "/run/netns"
#define NETNS_ETC_DIR "/etc/netns"

static int fail(const char *what, const char *arg)
{
	fprintf(stderr, "membrane-pause: %s %s: %s\n", what, arg, strerror(errno));
	return 1;
}

/* /run/netns as a shared mount point, as iproute2 sets it up (idempotent). */
static int netns_dir(void)
{
	if (mkdir(NETNS_RUN_DIR, 0755) < 0 && errno != EEXIST)
		return fail("mkdir", NETNS_RUN_DIR);
	while (mount("", NETNS_RUN_DIR, "none", MS_SHARED | MS_REC, NULL) < 0) {
		if (errno != EINVAL)
			return fail("make shared", NETNS_RUN_DIR);
		/* not a mount point yet: bind it on itself, then make it shared */
		if (mount(NETNS_RUN_DIR, NETNS_RUN_DIR, "none", MS_BIND | MS_REC, NULL) < 0)
			return fail("bind", NETNS_RUN_DIR);
	}
	return 0;
}

static int join_or_create_netns(const char *name)
{
	char path[PATH_MAX];
	int fd;

	if (snprintf(path, sizeof(path), "%s/%s", NETNS_RUN_DIR, name) >= (int)sizeof(path)) {
		errno = ENAMETOOLONG;
		return fail("netns", name);
	}
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd >= 0) { /* a retried start: the namespace is still there */
		if (setns(fd, CLONE_NEWNET) < 0)
			return fail("setns", path);
		close(fd);
		return 0;
	}
	if (netns_dir())
		return 1;
	fd = open(path, O_RDONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0);
	if (fd < 0)
		return fail("create", path);
	close(fd);
	if (unshare(CLONE_NEWNET) < 0) {
		fail("unshare net for", name);
		unlink(path);
		return 1;
	}
	if (mount("/proc/self/ns/net", path, "none", MS_BIND, NULL) < 0) {
		fail("bind net namespace to", path);
		unlink(path);
		return 1;
	}
	return 0;
}

static int mount_namespace(const char *name)
{
	char dir[PATH_MAX], src[PATH_MAX + NAME_MAX + 2], dst[NAME_MAX + 8];
	struct statvfs fsstat;
	unsigned long sysflags = 0;
	struct dirent *entry;
	DIR *etc;

	if (unshare(CLONE_NEWNS) < 0)
		return fail("unshare mount for", name);
	if (mount("", "/", "none", MS_SLAVE | MS_REC, NULL) < 0)
		return fail("make slave", "/");
	/* No copy of /run/netns in here: as a slave of the host's shared /run/netns this namespace would get
	 * every later pod's netns bind mount (and its unmount) propagated into it, and copy every earlier one,
	 * so each sandbox start and teardown cost O(pods) and the pods' namespaces held O(pods^2) mounts.
	 * Nothing in a pod opens /run/netns/<name>: the runtime, the CNI plugin and the agents do, outside. */
	if (umount2(NETNS_RUN_DIR, MNT_DETACH) < 0 && errno != EINVAL && errno != ENOENT)
		return fail("detach", NETNS_RUN_DIR);
	if (umount2("/sys", MNT_DETACH) < 0) {
		/* as ip netns exec: a /sys that cannot be unmounted stays; mount over it read-only if it was */
		if (statvfs("/sys", &fsstat) == 0 && (fsstat.f_flag & ST_RDONLY))
			sysflags = MS_RDONLY;
	}
	if (mount(name, "/sys", "sysfs", sysflags, NULL) < 0)
		return fail("mount sysfs for", name);
	snprintf(dir, sizeof(dir), "%s/%s", NETNS_ETC_DIR, name);
	etc = opendir(dir);
	if (etc == NULL)
		return errno == ENOENT ? 0 : fail("open", dir);
	while ((entry = readdir(etc)) != NULL) {
		if (strcmp(entry->d_name, ".") == 0 || strcmp(entry->d_name, "..") == 0)
			continue;
		snprintf(src, sizeof(src), "%s/%s", dir, entry->d_name);
		snprintf(dst, sizeof(dst), "/etc/%s", entry->d_name);
		if (mount(src, dst, "none", MS_BIND, NULL) < 0)  /* ip netns exec warns and goes on */
			fprintf(stderr, "membrane-pause: bind %s -> %s: %s\n", src, dst, strerror(errno));
	}
	closedir(etc);
	return 0;
}

int main(int argc, char **argv)
{
	char *end;
	long ready;

	if (argc != 4) {
		fprintf(stderr, "usage: membrane-pause NETNS HOSTNAME READY_FD\n");
		return 2;
	}
	ready = strtol(argv[3], &end, 10);
	if (*argv[1] == '\0' || strchr(argv[1], '/') || *end != '\0' || ready < 0 || ready > INT_MAX) {
		fprintf(stderr, "membrane-pause: bad netns name or ready fd\n");
		return 2;
	}
	if (join_or_create_netns(argv[1]))
		return 1;
	if (unshare(CLONE_NEWUTS) < 0)
		return fail("unshare uts for", argv[1]);
	if (sethostname(argv[2], strlen(argv[2])) < 0)
		return fail("sethostname", argv[2]);
	if (mount_namespace(argv[1]))
		return 1;
	if (write((int)ready, "1", 1) != 1)
		return fail("write ready fd", argv[3]);
	close((int)ready);
	for (;;)
		pause();
}
