# The release image, in node_exporter's style: the static binary that
# `make build` leaves in the build context (CGO_ENABLED=0, so it needs no
# libc) copied onto an empty base. Nothing is pulled, so it builds offline:
#
#	make build && docker build -t listenq_exporter .    # or podman build
#	make docker                                          # the same, either engine
#
# The image holds the exporter and nothing else. It needs no more at run
# time: it reads /proc (mounted by the runtime, or the host's at
# --path.procfs), talks netlink and unix sockets, and serves HTTP; it
# makes no outgoing TLS connections, so there are no CA certificates, and it
# looks up no user names or time zones. No shell either: debug it from the
# host or with an ephemeral debug container.
#
# To build from source in a container instead (with access to a registry
# for golang and the Go module proxy), use Dockerfile.build.
FROM scratch

ARG VERSION=unknown
ARG REVISION=unknown
LABEL org.opencontainers.image.title="listenq_exporter" \
      org.opencontainers.image.description="Prometheus exporter of Linux listen-queue (accept backlog) health, per listener, with Kubernetes pod identity" \
      org.opencontainers.image.source="https://github.com/listenq/listenq_exporter" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}"

COPY listenq_exporter /bin/listenq_exporter

# Unprivileged by default (65534 is "nobody"; the image has no /etc/passwd,
# so it is given by number). Alone it sees the listeners of its own network
# namespace. The Kubernetes DaemonSet (deploy/kubernetes) runs it as uid 0
# with every capability dropped but SYS_ADMIN, SYS_PTRACE and
# DAC_READ_SEARCH, to see every pod of the node.
USER 65534:65534
EXPOSE 9637
ENTRYPOINT ["/bin/listenq_exporter"]
