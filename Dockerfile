# syntax=docker/dockerfile:1
# One image holding the four fleetmeter binaries, static (CGO_ENABLED=0), run as a
# non-root user on distroless/static. The command picks the binary:
#   docker run IMAGE mediator run --config /etc/fleetmeter/mediator.yaml
#   docker run IMAGE rater run --config /etc/fleetmeter/rater.yaml --instance rater-0
#   docker run IMAGE rater load --config /etc/fleetmeter/rater.yaml
#   docker run IMAGE api --config /etc/fleetmeter/api.yaml
# The build context is the repository's root with its .git, so `--version` reports the
# tag and revision the image was built from (.dockerignore leaves out only untracked output).

ARG GO_VERSION=1.26

# The build runs on the builder's own platform and cross-compiles (no emulation).
FROM --platform=$BUILDPLATFORM golang:${GO_VERSION}-bookworm AS build
WORKDIR /src
# Modules first, so a source change does not download them again.
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod go mod download
COPY . .
ARG TARGETOS
ARG TARGETARCH
RUN --mount=type=cache,target=/go/pkg/mod --mount=type=cache,target=/root/.cache/go-build \
    CGO_ENABLED=0 GOOS=${TARGETOS} GOARCH=${TARGETARCH} \
    go build -trimpath -ldflags="-s -w" -o /out/ ./cmd/mediator ./cmd/rater ./cmd/api ./cmd/fleetmeter

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/mediator /out/rater /out/api /out/fleetmeter /usr/local/bin/
# The example tariffs, so `rater run` starts without a mount; deployments mount their own.
COPY deploy/tariffs/ /etc/fleetmeter/tariffs/
USER 65532:65532
# mediator: metrics 9464, HTTP ingest 8080, CoAP 5683/udp; rater run 9465; rater load 9466;
# api 8480. Each binary serves /metrics, /healthz and /readyz on its --listen.
EXPOSE 9464 9465 9466 8080 8480 5683/udp
ENTRYPOINT []
CMD ["mediator", "--help"]
