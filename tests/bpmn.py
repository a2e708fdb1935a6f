"""Small BPMN documents built in tests."""

from __future__ import annotations

HEAD = ('<?xml version="1.0" encoding="UTF-8"?>\n'
        '<bpmn:definitions xmlns:bpmn="http://www.omg.org/spec/BPMN/20100524/MODEL" '
        'xmlns:spiffworkflow="http://spiffworkflow.org/bpmn/schema/1.0/core" id="defs" '
        'targetNamespace="http://bpmn.io/schema/bpmn">\n')


def service_task(task_id: str, stone: str, params: dict[str, str] | None = None,
                 props: dict[str, str] | None = None, extra: str = "") -> str:
    p = "".join(f'<spiffworkflow:parameter id="{k}" type="str" value="{v}"/>' for k, v in (params or {}).items())
    pr = "".join(f'<spiffworkflow:property name="{k}" value="{v}"/>' for k, v in (props or {}).items())
    props_xml = f"<spiffworkflow:properties>{pr}</spiffworkflow:properties>" if pr else ""
    return (f'<bpmn:serviceTask id="{task_id}" name="{task_id}"><bpmn:extensionElements>'
            f'<spiffworkflow:serviceTaskOperator id="{stone}"><spiffworkflow:parameters>{p}'
            f'</spiffworkflow:parameters></spiffworkflow:serviceTaskOperator>{props_xml}'
            f'</bpmn:extensionElements>{extra}</bpmn:serviceTask>')


def chain(process_id: str, *tasks: tuple[str, str, dict[str, str]]) -> str:
    """A start event, the given ``(id, stone, params)`` tasks in sequence, an end event."""
    ids = ["start"] + [t[0] for t in tasks] + ["end"]
    body = ['<bpmn:startEvent id="start"/>']
    body += [service_task(tid, stone, params) for tid, stone, params in tasks]
    body += ['<bpmn:endEvent id="end"/>']
    body += [f'<bpmn:sequenceFlow id="f{i}" sourceRef="{a}" targetRef="{b}"/>'
             for i, (a, b) in enumerate(zip(ids, ids[1:], strict=False))]
    return HEAD + f'<bpmn:process id="{process_id}" isExecutable="true">' + "".join(body) + \
        "</bpmn:process></bpmn:definitions>"
