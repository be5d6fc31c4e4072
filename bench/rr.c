// SPDX-License-Identifier: Apache-2.0
/* A minimal TCP_RR / TCP_CRR pair in the spirit of netperf (which Debian ships only in non-free).
 *
 *   rr server PORT                serve forever: answer each 1-byte request with 1 byte; a
 *                                 connection ends when the client closes it
 *   rr rr  HOST PORT SECONDS      one connection, 1-byte request/response in a loop
 *   rr crr HOST PORT SECONDS      a new connection per request: connect, 1 byte each way, close
 *
 * Clients print "<transactions> <seconds>" on stdout. Built by bench/datapath.py into a scratch
 * directory with gcc; run it pinned (taskset) as the benchmark README explains.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void nodelay(int fd)
{
	int one = 1;

	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
}

static int serve(int port)
{
	struct sockaddr_in addr = { .sin_family = AF_INET, .sin_port = htons(port) };
	int one = 1, lfd, fd;
	char byte;

	lfd = socket(AF_INET, SOCK_STREAM, 0);
	setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (lfd < 0 || bind(lfd, (struct sockaddr *)&addr, sizeof(addr)) || listen(lfd, 1024)) {
		perror("rr server");
		return 1;
	}
	printf("listening\n");
	fflush(stdout);
	for (;;) {
		fd = accept(lfd, NULL, NULL);
		if (fd < 0)
			continue;
		nodelay(fd);
		while (read(fd, &byte, 1) == 1)
			if (write(fd, &byte, 1) != 1)
				break;
		close(fd);
	}
}

static int dial(const struct sockaddr_in *addr)
{
	int fd = socket(AF_INET, SOCK_STREAM, 0);

	if (fd < 0 || connect(fd, (const struct sockaddr *)addr, sizeof(*addr))) {
		perror("rr connect");
		exit(1);
	}
	nodelay(fd);
	return fd;
}

static int transact(int fd)
{
	char byte = 'x';

	return write(fd, &byte, 1) == 1 && read(fd, &byte, 1) == 1;
}

int main(int argc, char **argv)
{
	struct sockaddr_in addr = { .sin_family = AF_INET };
	double start, end, elapsed;
	long count = 0;
	int fd, crr;

	if (argc == 3 && !strcmp(argv[1], "server"))
		return serve(atoi(argv[2]));
	if (argc != 5 || (strcmp(argv[1], "rr") && strcmp(argv[1], "crr"))) {
		fprintf(stderr, "usage: rr server PORT | rr {rr|crr} HOST PORT SECONDS\n");
		return 2;
	}
	crr = !strcmp(argv[1], "crr");
	if (inet_pton(AF_INET, argv[2], &addr.sin_addr) != 1) {
		fprintf(stderr, "rr: bad address %s\n", argv[2]);
		return 2;
	}
	addr.sin_port = htons(atoi(argv[3]));
	start = now();
	end = start + atof(argv[4]);
	fd = crr ? -1 : dial(&addr);
	do {
		if (crr)
			fd = dial(&addr);
		if (!transact(fd)) {
			fprintf(stderr, "rr: transaction failed after %ld\n", count);
			return 1;
		}
		if (crr) {
			/* RST instead of FIN/TIME_WAIT: thousands of connections a second would
			 * otherwise exhaust the client's ephemeral ports. */
			struct linger lg = { .l_onoff = 1, .l_linger = 0 };

			setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
			close(fd);
		}
		count++;
	} while ((count & 15) || now() < end);
	elapsed = now() - start;
	if (!crr)
		close(fd);
	printf("%ld %.6f\n", count, elapsed);
	return 0;
}
