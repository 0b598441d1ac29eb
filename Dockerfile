# A static binary on an empty base image: nothing in the image but the
# exporter, and it runs as an unprivileged user unless told otherwise.
FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=unknown
ARG REVISION=unknown
RUN CGO_ENABLED=0 go build -trimpath \
      -ldflags "-s -w -X github.com/prometheus/common/version.Version=${VERSION} -X github.com/prometheus/common/version.Revision=${REVISION}" \
      -o /listenq_exporter ./cmd/listenq_exporter

FROM scratch
COPY --from=build /listenq_exporter /bin/listenq_exporter
USER 65534:65534
EXPOSE 9637
ENTRYPOINT ["/bin/listenq_exporter"]
