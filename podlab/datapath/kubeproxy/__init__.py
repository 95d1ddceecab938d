"""kube-proxy's Service datapath, iptables and nftables modes: the baseline the eBPF
datapath is measured against, kept isolated here and built the way kube-proxy builds it."""

from podlab.datapath.kubeproxy.model import Backend, ServicePort
from podlab.datapath.kubeproxy.proxier import MODES, KubeProxy, ProxyError

__all__ = ["MODES", "Backend", "KubeProxy", "ProxyError", "ServicePort"]
