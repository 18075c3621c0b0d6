from graphql import ExecutionResult, build_schema, parse
from graphql.execution.executor import Executor

import schema.schema  # noqa: F401  (installs the fix)


def test_subscription_events_do_not_share_the_subfield_memo() -> None:
    sdl = build_schema("type Query { a: Int } type Subscription { s: S } type S { x: Int }")
    executor = Executor.build(sdl, parse("subscription { s { x } }"))
    assert not isinstance(executor, list)
    for n in range(100):
        event = executor.build_per_event_executor({"s": {"x": n}})
        result = event.execute_operation(False)
        assert isinstance(result, ExecutionResult)
        assert result.data == {"s": {"x": n}}
    assert executor._relevant_sub_fields == {}
