// Package netns finds the network namespaces of a host and gives a handle
// into each, through which collectors read it.
//
// Data flow:
//
//	Discover (procfs /proc/*/ns/net + bind mounts /run/netns/*, docker's)
//	   -> []Found, deduplicated by Key (device, inode of the nsfs file)
//	Set.Refresh
//	   -> identify each new Found (pod, runtime; see package identity),
//	      drop those the filters exclude,
//	      open a Handle for each new one (entering the namespace once),
//	      close the Handle of every namespace no longer found
//	Set.Handles -> collectors and sampler, every scrape and round
//
// A Handle owns everything bound to its namespace: long-lived sock_diag
// sockets opened inside it (one, or one per Use in the host's and the
// exporter's own namespace), the netstat and sysctl files opened inside it
// (procfs and /proc/sys show the namespace of the thread that opens them,
// and an open file keeps showing that namespace), and the nsfs file to
// enter it again for the rare interface-name lookup. All of them pin the
// namespace in the kernel, so Close releases them all; the Set closes a
// Handle as soon as no process or bind mount holds its namespace, so the
// exporter never keeps a deleted pod's namespace alive.
package netns
