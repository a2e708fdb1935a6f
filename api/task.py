"""``/task``: the tasks of a process and their history (first seed)."""

from __future__ import annotations

from typing import Any

from flask import current_app, request
from flask_restx import Namespace, Resource
from werkzeug.exceptions import MethodNotAllowed

from api.body import PUBLIC_ID_PATTERN, public_id
from api.current import service
from api.schemas import BEARER, error_responses, event_view, register_models, task_view
from orchestrator.errors import InvalidInput
from orchestrator.service import Service

OPERATIONS = {"reRun": Service.rerun_task, "resume": Service.resume_task}

PATH = "/task"
ns = Namespace("task", description="Tasks: one stone's work inside a process", authorizations=BEARER)
M = register_models(ns)
ID_PARAM = {"description": "the task id: a decimal number (anything else is 404)", "pattern": PUBLIC_ID_PATTERN}


@ns.route("")
@ns.doc(security="bearer")
class TaskList(Resource):
    @ns.param("processInstanceId", "the process whose tasks to list: a decimal number (anything else is 404)",
              required=True, pattern=PUBLIC_ID_PATTERN)
    @ns.response(200, "the tasks, in creation order", [M["task"]])
    @error_responses(ns, {400: "processInstanceId missing", 401: None, 404: "no such process"})
    def get(self) -> Any:
        """List the tasks of a process."""
        pid = request.args.get("processInstanceId")
        if not pid:
            raise InvalidInput("query parameter processInstanceId is required")
        return [task_view(t) for t in service().list_tasks(public_id(pid, "process"))]


@ns.route("/<string:taskId>")
@ns.param("taskId", **ID_PARAM)
@ns.doc(security="bearer")
class TaskItem(Resource):
    @ns.response(200, "the task", M["task"])
    @error_responses(ns, {401: None, 404: "no such task"})
    def get(self, taskId: str) -> Any:
        """Read a task."""
        return task_view(service().get_task(public_id(taskId, "task")))


@ns.route("/<string:taskId>/history")
@ns.param("taskId", **ID_PARAM)
@ns.doc(security="bearer")
class TaskHistory(Resource):
    @ns.response(200, "every status applied to the task, oldest first", [M["event"]])
    @error_responses(ns, {401: None, 404: "no such task"})
    def get(self, taskId: str) -> Any:
        """The task's event history."""
        return [event_view(e) for e in service().task_history(public_id(taskId, "task"))]

    @ns.doc(False)
    def options(self, taskId: str) -> Any:
        """Flask's automatic answer would list PUT too, as ``/task/{taskId}/{operate}`` also matches this path."""
        return current_app.response_class(status=200, headers={"Allow": "GET, HEAD, OPTIONS"})


@ns.route("/<string:taskId>/<string:operate>")
@ns.param("taskId", **ID_PARAM)
@ns.param("operate", "reRun: run the failed task again; resume: leave debug mode and roll back",
          enum=list(OPERATIONS))
@ns.doc(security="bearer")
class TaskOperation(Resource):
    @ns.response(200, "the task", M["task"])
    @error_responses(ns, {400: "unknown operation", 401: None, 404: "no such task",
                          409: "the task is not a failed task of a process in debug mode"})
    def put(self, taskId: str, operate: str) -> Any:
        """Debug a failed task of a process started with ``debug: true``."""
        if operate == "history":  # /task/{taskId}/history is a GET resource that this route shadows for PUT
            raise MethodNotAllowed(valid_methods=["GET", "HEAD", "OPTIONS"])
        operation = OPERATIONS.get(operate)
        if operation is None:
            raise InvalidInput(f"unknown operation {operate!r}: use reRun or resume")
        return task_view(operation(service(), public_id(taskId, "task")))
