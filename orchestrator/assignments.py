"""Who takes part in a model's user tasks: assignees, candidate users and groups, lanes.

Read from the BPMN (Camunda's ``assignee`` / ``candidateUsers`` / ``candidateGroups``
attributes, BPMN ``potentialOwner`` / ``humanPerformer`` expressions, lanes) for the
Activiti-style ``assigncheck`` and the ``involvedUser`` filter.
"""

from __future__ import annotations

import re
from typing import Any

from orchestrator.engine import BPMN_NS, CAMUNDA_NS, read_xml

NS = {"bpmn": BPMN_NS, "camunda": CAMUNDA_NS}


def _split(value: str | None) -> list[str]:
    return [v.strip() for v in (value or "").split(",") if v.strip()]


def _person(pid: str, kind: str, name: str | None = None) -> dict[str, Any]:
    return {"id": pid, "code": pid, "name": name or pid, "type": kind}


def user_tasks(xml: str | bytes, process_id: str | None = None) -> list[dict[str, Any]]:
    """Every user task of the process: ``{activityId, activityName, participants: [...]}``."""
    root = read_xml(xml)
    processes = root.findall("bpmn:process", NS)
    if process_id is not None:
        processes = [p for p in processes if p.get("id") == process_id] or processes
    items = []
    for process in processes:
        lanes: dict[str, list[dict[str, Any]]] = {}
        for lane in process.iterfind(".//bpmn:lane", NS):
            lane_id = lane.get("id") or lane.get("name")
            if not lane_id:
                continue  # a lane with neither id nor name names nobody
            for ref in lane.iterfind("bpmn:flowNodeRef", NS):
                lanes.setdefault((ref.text or "").strip(), []).append(_person(lane_id, "lane", lane.get("name")))
        for task in process.iterfind(".//bpmn:userTask", NS):
            task_id = task.get("id")
            if not task_id:
                continue  # nothing can name it: no activityId to answer with
            people = []
            if task.get(f"{{{CAMUNDA_NS}}}assignee", "").strip():
                people.append(_person(task.get(f"{{{CAMUNDA_NS}}}assignee").strip(), "assignee"))
            people += [_person(u, "candidateUser") for u in _split(task.get(f"{{{CAMUNDA_NS}}}candidateUsers"))]
            people += [_person(g, "candidateGroup") for g in _split(task.get(f"{{{CAMUNDA_NS}}}candidateGroups"))]
            for role, kind in (("humanPerformer", "assignee"), ("potentialOwner", "candidateUser")):
                for expr in task.iterfind(f"bpmn:{role}//bpmn:formalExpression", NS):
                    for item in _split(expr.text):
                        match = re.fullmatch(r"(user|group)\((.+)\)", item)
                        if match:
                            people.append(_person(match.group(2), "candidateGroup" if match.group(1) == "group"
                                                  else kind))
                        else:
                            people.append(_person(item, kind))
            people += lanes.get(task_id, [])
            items.append({"activityId": task_id, "activityName": task.get("name") or task_id,
                          "participants": people})
    return items


def users_of(xml: str | bytes, process_id: str | None = None) -> set[str]:
    """Users named in the user tasks (assignees and candidate users): ``involvedUser`` matches these."""
    return {p["id"] for t in user_tasks(xml, process_id) for p in t["participants"]
            if p["type"] in ("assignee", "candidateUser")}
