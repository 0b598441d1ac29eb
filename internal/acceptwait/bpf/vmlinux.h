/* SPDX-License-Identifier: (GPL-2.0-only OR MIT) */
/*
 * The few kernel types acceptwait.c reads, declared by hand. Every struct is
 * preserve_access_index, so clang records each field access as a CO-RE
 * relocation and the loader finds the real offset in the running kernel's
 * BTF: only the field names here must match the kernel, not the layout.
 * A full vmlinux.h dumped from one kernel would tie the committed object to
 * that kernel's headers and make it differ from machine to machine.
 */
#ifndef LISTENQ_VMLINUX_H
#define LISTENQ_VMLINUX_H

typedef unsigned char __u8;
typedef unsigned short __u16;
typedef unsigned int __u32;
typedef unsigned long long __u64;
typedef signed char __s8;
typedef short __s16;
typedef int __s32;
typedef long long __s64;
typedef __u16 __be16;
typedef __u32 __be32;
typedef __u32 __wsum;
typedef _Bool bool;
#define true 1
#define false 0

enum bpf_map_type {
	BPF_MAP_TYPE_HASH = 1,
	BPF_MAP_TYPE_ARRAY = 2,
	BPF_MAP_TYPE_PERCPU_ARRAY = 6,
	BPF_MAP_TYPE_LRU_HASH = 9,
};

enum {
	BPF_ANY = 0,
	BPF_NOEXIST = 1,
	BPF_EXIST = 2,
};

#pragma clang attribute push(__attribute__((preserve_access_index)), apply_to = record)

typedef struct {
	__s64 counter;
} atomic64_t;

struct ns_common {
	unsigned int inum;
};

struct net {
	struct ns_common ns;
};

typedef struct {
	struct net *net;
} possible_net_t;

struct sock_common {
	__u16 skc_num;
	unsigned short skc_family;
	volatile unsigned char skc_state;
	possible_net_t skc_net;
	atomic64_t skc_cookie;
};

struct socket;

struct sock {
	struct sock_common __sk_common;
	__u16 sk_protocol;
	__u32 sk_ack_backlog;
	__u32 sk_max_ack_backlog;
	struct socket *sk_socket;
};

struct file {
	void *private_data;
};

struct socket {
	struct sock *sk;
	struct file *file;
};

struct fdtable {
	unsigned int max_fds;
	struct file **fd;
};

struct files_struct {
	struct fdtable *fdt;
};

struct task_struct {
	struct files_struct *files;
};

struct pt_regs;

/* Flavours of struct pt_regs (the suffix after ___ is ignored when matching
 * the kernel's type): the program asks which field exists. */
struct pt_regs___x86 {
	unsigned long di;
};

struct pt_regs___arm64 {
	__u64 orig_x0;
};

#pragma clang attribute pop

#endif
