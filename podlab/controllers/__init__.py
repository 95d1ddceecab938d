"""Kubernetes controllers that run against a `podlab.kubeapi.Store` in process: a scheduler,
Endpoints/EndpointSlices, StatefulSets, Deployments and kube-proxy, on a client-go-style
work queue. They know nothing of the lab: `podlab.lab.kube` wires them to one."""

from podlab.controllers.controller import Controller
from podlab.controllers.deployments import DeploymentController
from podlab.controllers.endpoints import EndpointsController
from podlab.controllers.scheduler import Scheduler
from podlab.controllers.service_proxy import ServiceProxy
from podlab.controllers.statefulsets import StatefulSetController
from podlab.controllers.workqueue import WorkQueue

__all__ = [
    "Controller",
    "DeploymentController",
    "EndpointsController",
    "Scheduler",
    "ServiceProxy",
    "StatefulSetController",
    "WorkQueue",
]
