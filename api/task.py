"""``/task``: the tasks of a process and their history (first seed)."""

from __future__ import annotations

from flask import current_app, request
from flask_restx import Namespace, Resource

from api.schemas import event_view, register_models, task_view
from orchestrator.errors import InvalidInput
from orchestrator.service import Service

OPERATIONS = {"reRun": Service.rerun_task, "resume": Service.resume_task}

PATH = "/task"
ns = Namespace("task", description="Tasks: one stone's work inside a process")
M = register_models(ns)


def service() -> Service:
    return current_app.extensions["orchestrator"]


@ns.route("")
class TaskList(Resource):
    @ns.param("processInstanceId", "the process whose tasks to list", required=True)
    @ns.response(200, "the tasks, in creation order", [M["task"]])
    @ns.response(400, "processInstanceId missing", M["error"])
    @ns.response(404, "no such process", M["error"])
    def get(self):
        """List the tasks of a process."""
        pid = request.args.get("processInstanceId")
        if not pid:
            raise InvalidInput("query parameter processInstanceId is required")
        return [task_view(t) for t in service().list_tasks(pid)]


@ns.route("/<string:taskId>")
@ns.param("taskId", "the task id")
class TaskItem(Resource):
    @ns.response(200, "the task", M["task"])
    @ns.response(404, "no such task", M["error"])
    def get(self, taskId: str):
        """Read a task."""
        return task_view(service().get_task(taskId))


@ns.route("/<string:taskId>/history")
@ns.param("taskId", "the task id")
class TaskHistory(Resource):
    @ns.response(200, "every status applied to the task, oldest first", [M["event"]])
    @ns.response(404, "no such task", M["error"])
    def get(self, taskId: str):
        """The task's event history."""
        return [event_view(e) for e in service().task_history(taskId)]


@ns.route("/<string:taskId>/<string:operate>")
@ns.param("taskId", "the task id")
@ns.param("operate", "reRun: run the failed task again; resume: leave debug mode and roll back")
class TaskOperation(Resource):
    @ns.response(200, "the task", M["task"])
    @ns.response(400, "unknown operation", M["error"])
    @ns.response(404, "no such task", M["error"])
    @ns.response(409, "the task is not a failed task of a process in debug mode", M["error"])
    def put(self, taskId: str, operate: str):
        """Debug a failed task of a process started with ``debug: true``."""
        operation = OPERATIONS.get(operate)
        if operation is None:
            raise InvalidInput(f"unknown operation {operate!r}: use reRun or resume")
        return task_view(operation(service(), taskId))
