"""Hardened Docker sandbox: containers, exec with real timeouts, file tools, offline image build."""

from tenax.sandbox._docker import DEFAULT_IMAGE, ensure_docker
from tenax.sandbox.docker_sandbox import DockerSandbox, cleanup_by_label
from tenax.sandbox.egress import EgressGateway, cleanup_egress, parse_allow_hosts
from tenax.sandbox.image import ImageBuildError, build_image, image_exists
from tenax.sandbox.tools import ToolBox

__all__ = [
    "DEFAULT_IMAGE",
    "DockerSandbox",
    "EgressGateway",
    "ImageBuildError",
    "ToolBox",
    "build_image",
    "cleanup_by_label",
    "cleanup_egress",
    "ensure_docker",
    "image_exists",
    "parse_allow_hosts",
]
