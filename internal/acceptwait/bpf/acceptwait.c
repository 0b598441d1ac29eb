// SPDX-License-Identifier: (GPL-2.0-only OR MIT)
//
// How long connections wait in a TCP listener's accept queue.
//
// Join: when the final ACK of a handshake arrives, the kernel adds the new
// child socket to its listener's accept queue, moves the child from
// SYN_RECV to ESTABLISHED (tracepoint inet_sock_set_state, on the child)
// and then wakes the listener (tracepoint sk_data_ready, on the listener),
// one after the other in the same softirq on the same CPU. The first event
// parks the child in a per-CPU slot; the second ties it to its listener,
// whose accept-queue length then includes it. Neither event alone knows
// both sockets.
//
// Leave: accept() returns the child: at fexit of inet_csk_accept where BPF
// trampolines load, else at the exit of the accept and accept4 syscalls.
//
// Listeners are keyed by socket cookie, unique on the host across network
// namespaces (the exporter's inet_diag dumps give every listener one and
// map it to its inode). Children are keyed by their struct sock address
// while they wait; their record goes when they are accepted or closed.
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_tracing.h>

#define IPPROTO_TCP 6
#define TCP_ESTABLISHED 1
#define TCP_SYN_RECV 3
#define TCP_CLOSE 7
#define TCP_LISTEN 10

// Upper bounds of the wait histogram's buckets, in nanoseconds; the last
// bucket counts everything above. Userspace reads the same table from the
// object (wait_bounds_ns), so the two cannot disagree.
#define NUM_BOUNDS 16
volatile const __u64 wait_bounds_ns[NUM_BOUNDS] = {
	100000ULL,     500000ULL,     1000000ULL,    2500000ULL,
	5000000ULL,    10000000ULL,   25000000ULL,   50000000ULL,
	100000000ULL,  250000000ULL,  500000000ULL,  1000000000ULL,
	2500000000ULL, 5000000000ULL, 10000000000ULL, 30000000000ULL,
};

struct listener_state {
	__u64 accepted;    // every accept seen
	__u64 timed;       // accepts whose join was seen: the histogram's count
	__u64 wait_sum_ns; // sum of their waits
	__u64 buckets[NUM_BOUNDS + 1];
	__u64 full_since; // ns when the queue last became full; 0 when not full
	__u64 full_ns;    // time full in periods that ended
	__u32 netns;      // inode of the listener's network namespace
	__u32 length;     // accept-queue length after the last event
	__u32 limit;      // backlog (sk_max_ack_backlog)
	__u32 epoch;      // epoch of peak[epoch & 1]
	__u32 peak[2];    // highest length in the epochs epoch and epoch-1
};

struct child {
	__u64 joined_ns;
	__u64 listener; // cookie
};

// A child that just became ESTABLISHED, waiting for its listener's wakeup.
struct parked {
	__u64 child; // struct sock address
	__u64 at_ns;
};

// The wakeup follows the state change within microseconds; a parked child
// older than this belongs to no wakeup (a simultaneous open, or a child
// processed later from its socket backlog).
#define PARK_NS 1000000ULL

// Counters of what the maps could not hold or the events could not tie.
enum {
	STAT_JOINS,          // children tied to the listener they joined
	STAT_JOIN_NO_COOKIE, // listener never dumped yet: no cookie to key it
	STAT_ACCEPTS,
	STAT_ACCEPT_UNSEEN,    // accepted child with no join record
	STAT_ACCEPT_NO_COOKIE, // accepting listener without a cookie
	STAT_CHILD_CLOSED,     // child closed before accept() took it
	STAT_CHILD_ACCEPTED,   // join records removed by accept
	STAT_LISTENERS_NEW,
	STAT_LISTENERS_CLOSED,
	NUM_STATS,
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, __u64);
	__type(value, struct listener_state);
} listeners SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, __u64);
	__type(value, struct child);
} children SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct parked);
} parking SEC(".maps");

// The listening fd of each accept in progress, between syscall entry and
// exit (the tracepoint route only).
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 8192);
	__type(key, __u64);
	__type(value, __u32);
} accepting SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, NUM_STATS);
	__type(key, __u32);
	__type(value, __u64);
} stats SEC(".maps");

// epoch is advanced by userspace once per sampler round: events of a round
// write peak[epoch & 1], so userspace reads the previous round's peak from
// the other slot without racing the next events.
volatile __u32 epoch;

static __always_inline void count(__u32 i)
{
	__u64 *v = bpf_map_lookup_elem(&stats, &i);
	if (v)
		*v += 1;
}

// observe records the queue length after an event and keeps the peak and
// the time spent full (length above limit, when new connections are
// refused).
static __always_inline void observe(struct listener_state *st, __u32 length, __u32 limit, __u64 now)
{
	__u32 e = epoch;
	st->length = length;
	st->limit = limit;
	if (st->epoch != e) {
		// First event of this round: the queue stood at its last length
		// since the round began.
		st->peak[e & 1] = length;
		st->epoch = e;
	} else if (length > st->peak[e & 1]) {
		st->peak[e & 1] = length;
	}
	if (length > limit) {
		if (st->full_since == 0)
			__sync_val_compare_and_swap(&st->full_since, 0, now);
	} else if (st->full_since != 0) {
		__u64 since = __sync_lock_test_and_set(&st->full_since, 0);
		if (since != 0 && now > since)
			__sync_fetch_and_add(&st->full_ns, now - since);
	}
}

static __always_inline struct listener_state *state_of(__u64 cookie, const struct sock *sk)
{
	struct listener_state *st = bpf_map_lookup_elem(&listeners, &cookie);
	if (st)
		return st;
	struct listener_state fresh = {};
	fresh.netns = BPF_CORE_READ(sk, __sk_common.skc_net.net, ns.inum);
	fresh.epoch = epoch;
	if (bpf_map_update_elem(&listeners, &cookie, &fresh, BPF_NOEXIST) == 0)
		count(STAT_LISTENERS_NEW);
	return bpf_map_lookup_elem(&listeners, &cookie);
}

// joined ties the child parked on this CPU to listener, which the kernel
// is waking because a connection joined its accept queue.
static __always_inline void joined(const struct sock *listener, __u64 now)
{
	__u32 zero = 0;
	struct parked *p = bpf_map_lookup_elem(&parking, &zero);
	if (!p || p->child == 0)
		return;
	const struct sock *child = (const struct sock *)p->child;
	__u64 at = p->at_ns;
	p->child = 0;
	if (now - at > PARK_NS ||
	    BPF_CORE_READ(child, __sk_common.skc_num) != BPF_CORE_READ(listener, __sk_common.skc_num) ||
	    BPF_CORE_READ(child, __sk_common.skc_net.net) != BPF_CORE_READ(listener, __sk_common.skc_net.net))
		return;
	count(STAT_JOINS);
	__u64 cookie = BPF_CORE_READ(listener, __sk_common.skc_cookie.counter);
	if (cookie == 0) {
		count(STAT_JOIN_NO_COOKIE);
		return;
	}
	__u64 key = (__u64)child;
	struct child c = {.joined_ns = at, .listener = cookie};
	bpf_map_update_elem(&children, &key, &c, BPF_ANY);
	struct listener_state *st = state_of(cookie, listener);
	if (st)
		observe(st, BPF_CORE_READ(listener, sk_ack_backlog), BPF_CORE_READ(listener, sk_max_ack_backlog), at);
}

static __always_inline __u32 bucket_of(__u64 wait)
{
	__u32 i;
#pragma unroll
	for (i = 0; i < NUM_BOUNDS; i++) {
		if (wait <= wait_bounds_ns[i])
			return i;
	}
	return NUM_BOUNDS;
}

// accepted handles accept() returning child from listener.
static __always_inline void accepted(const struct sock *listener, const struct sock *child, __u64 now)
{
	if (!listener || !child || BPF_CORE_READ(listener, sk_protocol) != IPPROTO_TCP)
		return;
	count(STAT_ACCEPTS);
	__u64 key = (__u64)child;
	struct child *c = bpf_map_lookup_elem(&children, &key);
	__u64 joined_ns = 0;
	if (c) {
		joined_ns = c->joined_ns;
		bpf_map_delete_elem(&children, &key);
		count(STAT_CHILD_ACCEPTED);
	} else {
		count(STAT_ACCEPT_UNSEEN);
	}
	__u64 cookie = BPF_CORE_READ(listener, __sk_common.skc_cookie.counter);
	if (cookie == 0) {
		count(STAT_ACCEPT_NO_COOKIE);
		return;
	}
	struct listener_state *st = state_of(cookie, listener);
	if (!st)
		return;
	__sync_fetch_and_add(&st->accepted, 1);
	if (joined_ns != 0 && now >= joined_ns) {
		__u64 wait = now - joined_ns;
		__u32 b = bucket_of(wait);
		__sync_fetch_and_add(&st->timed, 1);
		__sync_fetch_and_add(&st->wait_sum_ns, wait);
		if (b <= NUM_BOUNDS)
			__sync_fetch_and_add(&st->buckets[b], 1);
	}
	observe(st, BPF_CORE_READ(listener, sk_ack_backlog), BPF_CORE_READ(listener, sk_max_ack_backlog), now);
}

SEC("tp_btf/inet_sock_set_state")
int BPF_PROG(state_change, const struct sock *sk, int oldstate, int newstate)
{
	// Every TCP state change on the host passes here: the filters read the
	// typed argument directly, with no helper call.
	if (sk->sk_protocol != IPPROTO_TCP)
		return 0;
	if (oldstate == TCP_SYN_RECV && newstate == TCP_ESTABLISHED) {
		__u32 zero = 0;
		struct parked *p = bpf_map_lookup_elem(&parking, &zero);
		if (p) {
			p->child = (__u64)sk;
			p->at_ns = bpf_ktime_get_ns();
		}
		return 0;
	}
	if (newstate != TCP_CLOSE)
		return 0;
	if (oldstate == TCP_LISTEN) {
		__u64 cookie = BPF_CORE_READ(sk, __sk_common.skc_cookie.counter);
		if (bpf_map_delete_elem(&listeners, &cookie) == 0)
			count(STAT_LISTENERS_CLOSED);
		return 0;
	}
	// A child still recorded here was never accepted (or was accepted where
	// no probe looks, as by io_uring on the syscall route).
	__u64 key = (__u64)sk;
	if (bpf_map_delete_elem(&children, &key) == 0)
		count(STAT_CHILD_CLOSED);
	return 0;
}

SEC("tp_btf/sk_data_ready")
int BPF_PROG(data_ready, const struct sock *sk)
{
	// Every socket's wakeups pass here, one per packet of data: only
	// listeners' matter, and the test reads the typed argument directly.
	if (sk->__sk_common.skc_state != TCP_LISTEN || sk->sk_protocol != IPPROTO_TCP)
		return 0;
	joined(sk, bpf_ktime_get_ns());
	return 0;
}

SEC("fexit/inet_csk_accept")
int BPF_PROG(accept_exit, struct sock *sk)
{
	__u64 ret = 0;
	bpf_get_func_ret(ctx, &ret);
	accepted(sk, (const struct sock *)ret, bpf_ktime_get_ns());
	return 0;
}

// The syscall tracepoints' records: the common header, the syscall number,
// then the arguments or the return value.
struct syscall_enter {
	__u64 common;
	__s32 nr;
	__u32 pad;
	__u64 args[6];
};

struct syscall_exit {
	__u64 common;
	__s32 nr;
	__u32 pad;
	__s64 ret;
};

static __always_inline int enter(struct syscall_enter *ctx)
{
	__u64 id = bpf_get_current_pid_tgid();
	__u32 fd = (__u32)ctx->args[0];
	bpf_map_update_elem(&accepting, &id, &fd, BPF_ANY);
	return 0;
}

static __always_inline const struct sock *sock_of_fd(struct task_struct *task, __u32 fd)
{
	struct fdtable *fdt = BPF_CORE_READ(task, files, fdt);
	if (!fdt || fd >= BPF_CORE_READ(fdt, max_fds))
		return 0;
	struct file **fds = BPF_CORE_READ(fdt, fd);
	struct file *f = 0;
	if (bpf_probe_read_kernel(&f, sizeof(f), &fds[fd]) || !f)
		return 0;
	// accept() succeeded on both fds, so both are sockets.
	struct socket *sock = BPF_CORE_READ(f, private_data);
	if (!sock)
		return 0;
	return BPF_CORE_READ(sock, sk);
}

static __always_inline int leave(struct syscall_exit *ctx)
{
	__u64 id = bpf_get_current_pid_tgid();
	__u32 *fdp = bpf_map_lookup_elem(&accepting, &id);
	if (!fdp)
		return 0;
	__u32 lfd = *fdp;
	bpf_map_delete_elem(&accepting, &id);
	if (ctx->ret < 0)
		return 0;
	__u64 now = bpf_ktime_get_ns();
	struct task_struct *task = (struct task_struct *)bpf_get_current_task();
	accepted(sock_of_fd(task, lfd), sock_of_fd(task, (__u32)ctx->ret), now);
	return 0;
}

SEC("tracepoint/syscalls/sys_enter_accept4")
int enter_accept4(struct syscall_enter *ctx) { return enter(ctx); }

SEC("tracepoint/syscalls/sys_enter_accept")
int enter_accept(struct syscall_enter *ctx) { return enter(ctx); }

SEC("tracepoint/syscalls/sys_exit_accept4")
int exit_accept4(struct syscall_exit *ctx) { return leave(ctx); }

SEC("tracepoint/syscalls/sys_exit_accept")
int exit_accept(struct syscall_exit *ctx) { return leave(ctx); }

char LICENSE[] SEC("license") = "Dual MIT/GPL";
