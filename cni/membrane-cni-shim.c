/* membrane-cni-shim: the CNI plugin's fast path, compiled (issue 16).
 *
 * The Python plugin (membrane-cni) costs ~40 ms of CPU per exec, most of it interpreter start-up and
 * imports; under a pod burst dozens of them queue for the CPU. This program does no CNI work itself.
 * For ADD, DEL and CHECK it reads stdin, finds the network configuration's top-level "agentSocket",
 * sends every CNI_* variable and stdin to the agent as POST /v1/cni/exec, and writes the answer back:
 * the body is the plugin's stdout, the Membrane-CNI-Exit header its exit status. The agent runs the
 * same validation and produces the same error objects as the Python plugin (membrane.api.cni_invocation).
 *
 * Anything else execs the Python plugin, with stdin handed over intact: other commands or none, stdin
 * that is not plain ASCII JSON with a simple agentSocket string, an agent that cannot be reached, times
 * out or answers without the exit header (an agent older than /v1/cni/exec). So every error the shim
 * could meet is reported by the Python plugin, in exactly its words. The Python plugin is "membrane-cni"
 * next to this executable, or MEMBRANE_CNI_FALLBACK when compiled with -DMEMBRANE_CNI_FALLBACK=...
 */
#define _GNU_SOURCE
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>

extern char **environ;

#define MAX_STDIN (1 << 20)  /* a netconf is a few hundred bytes */
#define MAX_REPLY (16 << 20)
#define MAX_DEPTH 64

struct buf {
	char *data;
	size_t len, cap;
};

static int buf_add(struct buf *b, const char *s, size_t n)
{
	if (b->len + n + 1 > b->cap) {
		size_t cap = b->cap ? b->cap : 4096;
		while (cap < b->len + n + 1)
			cap *= 2;
		char *d = realloc(b->data, cap);
		if (!d)
			return -1;
		b->data = d;
		b->cap = cap;
	}
	memcpy(b->data + b->len, s, n);
	b->len += n;
	b->data[b->len] = 0;
	return 0;
}

static int buf_str(struct buf *b, const char *s) { return buf_add(b, s, strlen(s)); }

/* s[0..n) as a JSON string; -1 for a byte >= 0x80 (left to the Python plugin) or no memory. */
static int buf_json_string(struct buf *b, const char *s, size_t n)
{
	if (buf_add(b, "\"", 1))
		return -1;
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];
		char esc[8];
		if (c >= 0x80)
			return -1;
		if (c == '"' || c == '\\') {
			esc[0] = '\\';
			esc[1] = (char)c;
			if (buf_add(b, esc, 2))
				return -1;
		} else if (c < 0x20 || c == 0x7f) {
			snprintf(esc, sizeof(esc), "\\u%04x", c);
			if (buf_add(b, esc, 6))
				return -1;
		} else if (buf_add(b, (const char *)&c, 1)) {
			return -1;
		}
	}
	return buf_add(b, "\"", 1);
}

/* ---- the Python plugin, for everything the fast path does not take ------------------------------ */

static struct buf in;  /* stdin, once read */
static int stdin_read;

static void fallback(char **argv)
{
	char path[PATH_MAX];
#ifdef MEMBRANE_CNI_FALLBACK
	snprintf(path, sizeof(path), "%s", MEMBRANE_CNI_FALLBACK);
#else
	ssize_t n = readlink("/proc/self/exe", path, sizeof(path) - sizeof("/membrane-cni"));
	if (n <= 0)
		n = 0;
	path[n] = 0;
	char *slash = strrchr(path, '/');
	snprintf(slash ? slash : path, sizeof(path) - (size_t)(slash ? slash - path : 0), "/membrane-cni");
#endif
	if (stdin_read) {  /* hand the bytes already read to the plugin as its stdin */
		int fd = memfd_create("membrane-cni-stdin", 0);
		if (fd < 0 || (in.len && write(fd, in.data, in.len) != (ssize_t)in.len) || lseek(fd, 0, SEEK_SET) != 0 ||
		    dup2(fd, 0) < 0) {
			perror("membrane-cni-shim: passing stdin on");
			exit(1);
		}
		close(fd);
	}
	argv[0] = path;
	execv(path, argv);
	fprintf(stderr, "membrane-cni-shim: exec %s: %s\n", path, strerror(errno));
	printf("{\n    \"cniVersion\": \"1.1.0\",\n    \"code\": 999,\n    \"msg\": \"internal error in membrane-cni\",\n"
	       "    \"details\": \"cannot exec the Python plugin next to membrane-cni-shim\"\n}\n");
	exit(1);
}

/* ---- the network configuration's top-level "agentSocket" ------------------------------------------ */

static const char *ws(const char *p, const char *e)
{
	while (p < e && (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r'))
		p++;
	return p;
}

/* p at a '"': the byte after the closing quote, or NULL; *escaped set when it holds a backslash. */
static const char *skip_string(const char *p, const char *e, int *escaped)
{
	for (p++; p < e; p++) {
		if (*p == '\\') {
			*escaped = 1;
			p++;
		} else if (*p == '"') {
			return p + 1;
		}
	}
	return NULL;
}

/* One JSON value; the byte after it, or NULL. Lenient: the agent decodes the netconf for real. */
static const char *skip_value(const char *p, const char *e, int depth)
{
	int escaped = 0;
	p = ws(p, e);
	if (p >= e)
		return NULL;
	if (*p == '"')
		return skip_string(p, e, &escaped);
	if (*p == '{' || *p == '[') {
		char close = *p == '{' ? '}' : ']';
		if (depth > MAX_DEPTH)
			return NULL;
		p = ws(p + 1, e);
		if (p < e && *p == close)
			return p + 1;
		for (;;) {
			if (close == '}') {
				if (p >= e || *p != '"' || !(p = skip_string(p, e, &escaped)))
					return NULL;
				p = ws(p, e);
				if (p >= e || *p != ':')
					return NULL;
				p++;
			}
			if (!(p = skip_value(p, e, depth + 1)))
				return NULL;
			p = ws(p, e);
			if (p < e && *p == ',') {
				p = ws(p + 1, e);
				continue;
			}
			return p < e && *p == close ? p + 1 : NULL;
		}
	}
	const char *start = p;  /* numbers, true, false, null (and NaN, Infinity, which Python accepts) */
	while (p < e && (*p == '+' || *p == '-' || *p == '.' || (*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'z') ||
			 (*p >= 'A' && *p <= 'Z')))
		p++;
	return p > start ? p : NULL;
}

/* The last top-level "agentSocket" (json.loads keeps the last of repeated keys) into out; 0 on success,
 * -1 when it is missing, not a plain string (escapes), too long, or the text is not a JSON object. */
static int agent_socket(const char *p, const char *e, char *out, size_t size)
{
	const char *found = NULL;
	size_t found_len = 0;
	int bad = 0;
	p = ws(p, e);
	if (p >= e || *p != '{')
		return -1;
	p = ws(p + 1, e);
	if (p < e && *p == '}')
		return -1;
	for (;;) {
		int escaped = 0;
		const char *key = p + 1;
		if (p >= e || *p != '"' || !(p = skip_string(p, e, &escaped)))
			return -1;
		bad |= escaped;  /* an escaped key might decode to "agentSocket": leave it to Python */
		int is_socket = (size_t)(p - 1 - key) == strlen("agentSocket") && !memcmp(key, "agentSocket", 11);
		p = ws(p, e);
		if (p >= e || *p != ':')
			return -1;
		const char *value = ws(p + 1, e);
		if (!(p = skip_value(value, e, 1)))
			return -1;
		if (is_socket) {
			escaped = 0;
			found = NULL;
			if (*value == '"' && skip_string(value, e, &escaped) && !escaped) {
				found = value + 1;
				found_len = (size_t)(p - value) - 2;
			}
		}
		p = ws(p, e);
		if (p < e && *p == ',') {
			p = ws(p + 1, e);
			continue;
		}
		if (p >= e || *p != '}' || ws(p + 1, e) != e)
			return -1;
		break;
	}
	if (bad || !found || found_len == 0 || found_len >= size || found[0] != '/')
		return -1;
	memcpy(out, found, found_len);
	out[found_len] = 0;
	return 0;
}

/* ---- the exchange with the agent --------------------------------------------------------------------- */

static int read_stdin(void)
{
	char chunk[65536];
	stdin_read = 1;
	for (;;) {
		ssize_t n = read(0, chunk, sizeof(chunk));
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -1;
		if (n == 0)
			return 0;
		if (buf_add(&in, chunk, (size_t)n))  /* all of it, even past MAX_STDIN: the fallback gets it whole */
			return -1;
	}
}

/* The request body: {"env": {CNI_* variables}, "stdin": "..."}; -1 when something is not ASCII. */
static int build_body(struct buf *body)
{
	int first = 1;
	if (buf_str(body, "{\"env\": {"))
		return -1;
	for (char **ev = environ; *ev; ev++) {
		const char *eq = strchr(*ev, '=');
		if (strncmp(*ev, "CNI_", 4) != 0 || !eq)
			continue;
		if ((!first && buf_str(body, ", ")) || buf_json_string(body, *ev, (size_t)(eq - *ev)) ||
		    buf_str(body, ": ") || buf_json_string(body, eq + 1, strlen(eq + 1)))
			return -1;
		first = 0;
	}
	if (buf_str(body, "}, \"stdin\": ") || buf_json_string(body, in.data ? in.data : "", in.len) ||
	    buf_str(body, "}"))
		return -1;
	return 0;
}

static int send_all(int fd, const char *p, size_t n)
{
	while (n) {
		ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return -1;
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

/* POST and wait; on success the reply's stdout bytes in *out and the exit status returned, else -1. */
static int exchange(const char *socket_path, int timeout_s, struct buf *out)
{
	struct sockaddr_un addr = {.sun_family = AF_UNIX};
	struct timeval tv = {.tv_sec = timeout_s};
	struct buf body = {0}, req = {0}, reply = {0};
	char head[256], chunk[65536];
	int status = -1;
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

	snprintf(addr.sun_path, sizeof(addr.sun_path), "%s", socket_path);
	if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)) ||
	    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv)) ||
	    connect(fd, (struct sockaddr *)&addr, sizeof(addr)) || build_body(&body))
		goto out;
	snprintf(head, sizeof(head),
		 "POST /v1/cni/exec HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
		 "Content-Length: %zu\r\nConnection: close\r\n\r\n", body.len);
	if (buf_str(&req, head) || buf_add(&req, body.data, body.len) || send_all(fd, req.data, req.len))
		goto out;
	for (;;) {  /* Connection: close, so the reply ends at EOF */
		ssize_t n = recv(fd, chunk, sizeof(chunk), 0);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			goto out;
		if (n == 0)
			break;
		if (reply.len + (size_t)n > MAX_REPLY || buf_add(&reply, chunk, (size_t)n))
			goto out;
	}
	if (!reply.data || strncmp(reply.data, "HTTP/1.", 7) != 0 || strncmp(reply.data + 8, " 200 ", 5) != 0)
		goto out;
	char *end = strstr(reply.data, "\r\n\r\n");
	if (!end)
		goto out;
	long length = -1, exit_status = -1;
	for (char *line = strstr(reply.data, "\r\n") + 2; line < end; line = strstr(line, "\r\n") + 2) {
		if (!strncasecmp(line, "Content-Length:", 15))
			length = strtol(line + 15, NULL, 10);
		else if (!strncasecmp(line, "Membrane-CNI-Exit:", 18))
			exit_status = strtol(line + 18, NULL, 10);
	}
	end += 4;
	size_t have = reply.len - (size_t)(end - reply.data);
	if (exit_status < 0 || exit_status > 255 || length < 0 || (size_t)length != have || buf_add(out, end, have))
		goto out;
	status = (int)exit_status;
out:
	if (fd >= 0)
		close(fd);
	free(body.data);
	free(req.data);
	free(reply.data);
	return status;
}

int main(int argc, char **argv)
{
	char socket_path[sizeof(((struct sockaddr_un *)0)->sun_path)];
	struct buf out = {0};
	const char *command = getenv("CNI_COMMAND");
	int timeout_s;
	(void)argc;

	if (!command)
		fallback(argv);
	if (!strcmp(command, "ADD") || !strcmp(command, "DEL"))
		timeout_s = 120;  /* the Python plugin's AGENT_TIMEOUT */
	else if (!strcmp(command, "CHECK"))
		timeout_s = 60;
	else
		fallback(argv);  /* VERSION, STATUS, GC, unknown: rare, and the Python plugin answers them */
	if (read_stdin() || !in.data || in.len > MAX_STDIN || agent_socket(in.data, in.data + in.len, socket_path, sizeof(socket_path)))
		fallback(argv);
	int status = exchange(socket_path, timeout_s, &out);
	if (status < 0)
		fallback(argv);
	if (out.len && fwrite(out.data, 1, out.len, stdout) != out.len)
		return 1;
	return fflush(stdout) ? 1 : status;
}
