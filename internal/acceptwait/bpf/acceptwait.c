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
// trampolines load, else at the exit of the accept and accept4 syscalls,
// where the child's join record names its listener.
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
	__u64 listener;    // cookie
	__u64 listener_sk; // struct sock address: alive while its child waits
};

// A child that just became ESTABLISHED, waiting for its listener's wakeup.
struct parked {
	__u64 child; // struct sock address
	__u64 at_ns;
	__u64 net;  // the child's struct net address
	__u32 port; // the child's local port
	__u32 pad;
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
	STAT_ACCEPT_NO_COOKIE, // accepting listener without a cookie, or not found
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
	fresh.netns = sk->__sk_common.skc_net.net->ns.inum;
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
	// listener is a typed argument: its fields are read directly, without
	// a helper call, as the child's were when it was parked.
	if (now - at > PARK_NS || p->port != listener->__sk_common.skc_num ||
	    p->net != (__u64)listener->__sk_common.skc_net.net)
		return;
	count(STAT_JOINS);
	__u64 cookie = listener->__sk_common.skc_cookie.counter;
	if (cookie == 0) {
		count(STAT_JOIN_NO_COOKIE);
		return;
	}
	__u64 key = (__u64)child;
	struct child c = {.joined_ns = at, .listener = cookie, .listener_sk = (__u64)listener};
	bpf_map_update_elem(&children, &key, &c, BPF_ANY);
	struct listener_state *st = state_of(cookie, listener);
	if (st)
		observe(st, listener->sk_ack_backlog, listener->sk_max_ack_backlog, at);
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

// take removes child's join record, if it has one, and returns its join
// time (0 without) and, through listener_sk, the listener it joined.
static __always_inline __u64 take(const struct sock *child, __u64 *listener_sk)
{
	__u64 key = (__u64)child;
	struct child *c = bpf_map_lookup_elem(&children, &key);
	if (!c) {
		count(STAT_ACCEPT_UNSEEN);
		return 0;
	}
	__u64 joined_ns = c->joined_ns;
	*listener_sk = c->listener_sk;
	bpf_map_delete_elem(&children, &key);
	count(STAT_CHILD_ACCEPTED);
	return joined_ns;
}

// accepted records that accept() took a connection from listener that
// joined its queue at joined_ns (0: its join was not seen).
static __always_inline void accepted(const struct sock *listener, __u64 joined_ns, __u64 now)
{
	__u64 cookie = listener->__sk_common.skc_cookie.counter;
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
	observe(st, listener->sk_ack_backlog, listener->sk_max_ack_backlog, now);
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
			p->net = (__u64)sk->__sk_common.skc_net.net;
			p->port = sk->__sk_common.skc_num;
		}
		return 0;
	}
	if (newstate != TCP_CLOSE)
		return 0;
	if (oldstate == TCP_LISTEN) {
		__u64 cookie = sk->__sk_common.skc_cookie.counter;
		if (bpf_map_delete_elem(&listeners, &cookie) == 0)
			count(STAT_LISTENERS_CLOSED);
		return 0;
	}
	// A child still recorded here was never accepted (or was accepted where
	// no probe looks, as by io_uring on the syscall route). Most sockets
	// closing have no record: the lookup, inlined and lock-free, spares
	// them the delete's bucket lock.
	__u64 key = (__u64)sk;
	if (bpf_map_lookup_elem(&children, &key) && bpf_map_delete_elem(&children, &key) == 0)
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
	const struct sock *child = (const struct sock *)ret;
	if (!child || sk->sk_protocol != IPPROTO_TCP)
		return 0;
	__u64 now = bpf_ktime_get_ns();
	count(STAT_ACCEPTS);
	__u64 listener_sk = 0;
	accepted(sk, take(child, &listener_sk), now);
	return 0;
}

// The syscall exit tracepoint's record: the common header, the syscall
// number, the return value.
struct syscall_exit {
	__u64 common;
	__s32 nr;
	__u32 pad;
	__s64 ret;
};

// bpf_rdonly_cast gives a raw kernel address a type, so its fields are read
// by plain loads (faulting loads read 0) instead of one helper call each.
extern void *bpf_rdonly_cast(const void *obj, __u32 btf_id) __ksym;

#define kernel_ptr(type, p) ((const type *)bpf_rdonly_cast((const void *)(p), bpf_core_type_id_kernel(type)))

// sock_of_fd resolves one of the task's fds to its sock. The task is the
// current one, so its fd table is walked by loads, not probe reads; only
// the table's slot, a pointer to a pointer the verifier cannot type, is
// probe-read.
static __always_inline const struct sock *sock_of_fd(struct task_struct *task, __u64 fd)
{
	struct fdtable *fdt = task->files->fdt;
	if (!fdt || fd >= fdt->max_fds)
		return 0;
	struct file **fds = fdt->fd;
	struct file *f = 0;
	if (bpf_probe_read_kernel(&f, sizeof(f), &fds[fd]) || !f)
		return 0;
	// accept() succeeded on both fds, so both are sockets.
	const struct socket *sock = kernel_ptr(struct socket, kernel_ptr(struct file, f)->private_data);
	if (!sock)
		return 0;
	return sock->sk;
}

// listening_fd is accept's first argument, read at its exit from the
// task's saved user registers: x86-64 keeps it in di; arm64 overwrites x0
// with the result and keeps the argument in orig_x0. Other architectures
// are not read (the accept counts as without a listener).
static __always_inline __s64 listening_fd(struct task_struct *task)
{
	struct pt_regs *regs = (struct pt_regs *)bpf_task_pt_regs(task);
	if (!regs)
		return -1;
	if (bpf_core_field_exists(struct pt_regs___x86, di))
		return BPF_CORE_READ((struct pt_regs___x86 *)regs, di);
	if (bpf_core_field_exists(struct pt_regs___arm64, orig_x0))
		return BPF_CORE_READ((struct pt_regs___arm64 *)regs, orig_x0);
	return -1;
}

// leave handles accept() returning: the child's join record names its
// listener, so only the returned fd is resolved; a child whose join was not
// seen (it joined before the programs, or its record was evicted) is
// counted against the listener its fd argument names. No program runs at
// the syscall's entry.
static __always_inline int leave(struct syscall_exit *ctx)
{
	if (ctx->ret < 0)
		return 0;
	struct task_struct *task = bpf_get_current_task_btf();
	const struct sock *child = sock_of_fd(task, (__u64)ctx->ret);
	if (!child || child->sk_protocol != IPPROTO_TCP)
		return 0;
	__u64 now = bpf_ktime_get_ns();
	count(STAT_ACCEPTS);
	__u64 listener_sk = 0;
	__u64 joined_ns = take(child, &listener_sk);
	const struct sock *listener = listener_sk ? kernel_ptr(struct sock, listener_sk) : 0;
	if (!listener) {
		__s64 fd = listening_fd(task);
		if (fd >= 0)
			listener = sock_of_fd(task, (__u64)fd);
	}
	if (listener)
		accepted(listener, joined_ns, now);
	else
		count(STAT_ACCEPT_NO_COOKIE);
	return 0;
}

SEC("tracepoint/syscalls/sys_exit_accept4")
int exit_accept4(struct syscall_exit *ctx) { return leave(ctx); }

SEC("tracepoint/syscalls/sys_exit_accept")
int exit_accept(struct syscall_exit *ctx) { return leave(ctx); }

char LICENSE[] SEC("license") = "Dual MIT/GPL";
