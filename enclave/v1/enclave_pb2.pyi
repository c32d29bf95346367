import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Role(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ROLE_UNSPECIFIED: _ClassVar[Role]
    ROLE_RESEARCHER: _ClassVar[Role]
    ROLE_PROVIDER: _ClassVar[Role]
    ROLE_DPO: _ClassVar[Role]
    ROLE_ADMIN: _ClassVar[Role]

class JobState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    JOB_STATE_UNSPECIFIED: _ClassVar[JobState]
    JOB_STATE_QUEUED: _ClassVar[JobState]
    JOB_STATE_RUNNING: _ClassVar[JobState]
    JOB_STATE_SUCCEEDED: _ClassVar[JobState]
    JOB_STATE_FAILED: _ClassVar[JobState]
    JOB_STATE_CANCELLED: _ClassVar[JobState]
ROLE_UNSPECIFIED: Role
ROLE_RESEARCHER: Role
ROLE_PROVIDER: Role
ROLE_DPO: Role
ROLE_ADMIN: Role
JOB_STATE_UNSPECIFIED: JobState
JOB_STATE_QUEUED: JobState
JOB_STATE_RUNNING: JobState
JOB_STATE_SUCCEEDED: JobState
JOB_STATE_FAILED: JobState
JOB_STATE_CANCELLED: JobState

class Cost(_message.Message):
    __slots__ = ("epsilon", "delta", "rho", "epsilon_equivalent", "delta_equivalent")
    EPSILON_FIELD_NUMBER: _ClassVar[int]
    DELTA_FIELD_NUMBER: _ClassVar[int]
    RHO_FIELD_NUMBER: _ClassVar[int]
    EPSILON_EQUIVALENT_FIELD_NUMBER: _ClassVar[int]
    DELTA_EQUIVALENT_FIELD_NUMBER: _ClassVar[int]
    epsilon: str
    delta: str
    rho: str
    epsilon_equivalent: str
    delta_equivalent: str
    def __init__(self, epsilon: _Optional[str] = ..., delta: _Optional[str] = ..., rho: _Optional[str] = ..., epsilon_equivalent: _Optional[str] = ..., delta_equivalent: _Optional[str] = ...) -> None: ...

class JobError(_message.Message):
    __slots__ = ("code", "message")
    CODE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    code: str
    message: str
    def __init__(self, code: _Optional[str] = ..., message: _Optional[str] = ...) -> None: ...

class ReleaseRecord(_message.Message):
    __slots__ = ("index", "dataset", "cost", "mechanism", "plan_json", "value_json", "dataset_version")
    INDEX_FIELD_NUMBER: _ClassVar[int]
    DATASET_FIELD_NUMBER: _ClassVar[int]
    COST_FIELD_NUMBER: _ClassVar[int]
    MECHANISM_FIELD_NUMBER: _ClassVar[int]
    PLAN_JSON_FIELD_NUMBER: _ClassVar[int]
    VALUE_JSON_FIELD_NUMBER: _ClassVar[int]
    DATASET_VERSION_FIELD_NUMBER: _ClassVar[int]
    index: int
    dataset: str
    cost: Cost
    mechanism: str
    plan_json: str
    value_json: str
    dataset_version: int
    def __init__(self, index: _Optional[int] = ..., dataset: _Optional[str] = ..., cost: _Optional[_Union[Cost, _Mapping]] = ..., mechanism: _Optional[str] = ..., plan_json: _Optional[str] = ..., value_json: _Optional[str] = ..., dataset_version: _Optional[int] = ...) -> None: ...

class Job(_message.Message):
    __slots__ = ("job_id", "principal", "dataset", "request_id", "state", "result_json", "cost", "releases", "error", "printed", "created_at", "started_at", "finished_at", "script")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    PRINCIPAL_FIELD_NUMBER: _ClassVar[int]
    DATASET_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    RESULT_JSON_FIELD_NUMBER: _ClassVar[int]
    COST_FIELD_NUMBER: _ClassVar[int]
    RELEASES_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    PRINTED_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    STARTED_AT_FIELD_NUMBER: _ClassVar[int]
    FINISHED_AT_FIELD_NUMBER: _ClassVar[int]
    SCRIPT_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    principal: str
    dataset: str
    request_id: str
    state: JobState
    result_json: str
    cost: Cost
    releases: _containers.RepeatedCompositeFieldContainer[ReleaseRecord]
    error: JobError
    printed: str
    created_at: _timestamp_pb2.Timestamp
    started_at: _timestamp_pb2.Timestamp
    finished_at: _timestamp_pb2.Timestamp
    script: str
    def __init__(self, job_id: _Optional[str] = ..., principal: _Optional[str] = ..., dataset: _Optional[str] = ..., request_id: _Optional[str] = ..., state: _Optional[_Union[JobState, str]] = ..., result_json: _Optional[str] = ..., cost: _Optional[_Union[Cost, _Mapping]] = ..., releases: _Optional[_Iterable[_Union[ReleaseRecord, _Mapping]]] = ..., error: _Optional[_Union[JobError, _Mapping]] = ..., printed: _Optional[str] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., started_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., finished_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., script: _Optional[str] = ...) -> None: ...

class SubmitJobRequest(_message.Message):
    __slots__ = ("script", "dataset", "request_id", "wait")
    SCRIPT_FIELD_NUMBER: _ClassVar[int]
    DATASET_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    WAIT_FIELD_NUMBER: _ClassVar[int]
    script: str
    dataset: str
    request_id: str
    wait: bool
    def __init__(self, script: _Optional[str] = ..., dataset: _Optional[str] = ..., request_id: _Optional[str] = ..., wait: _Optional[bool] = ...) -> None: ...

class GetJobRequest(_message.Message):
    __slots__ = ("job_id",)
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    def __init__(self, job_id: _Optional[str] = ...) -> None: ...

class CancelJobRequest(_message.Message):
    __slots__ = ("job_id",)
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    def __init__(self, job_id: _Optional[str] = ...) -> None: ...

class WatchJobRequest(_message.Message):
    __slots__ = ("job_id",)
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    def __init__(self, job_id: _Optional[str] = ...) -> None: ...

class ListJobsRequest(_message.Message):
    __slots__ = ("page_size", "page_token")
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    page_size: int
    page_token: str
    def __init__(self, page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListJobsResponse(_message.Message):
    __slots__ = ("jobs", "next_page_token")
    JOBS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    jobs: _containers.RepeatedCompositeFieldContainer[Job]
    next_page_token: str
    def __init__(self, jobs: _Optional[_Iterable[_Union[Job, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class EstimateCostRequest(_message.Message):
    __slots__ = ("script", "dataset")
    SCRIPT_FIELD_NUMBER: _ClassVar[int]
    DATASET_FIELD_NUMBER: _ClassVar[int]
    script: str
    dataset: str
    def __init__(self, script: _Optional[str] = ..., dataset: _Optional[str] = ...) -> None: ...

class ReleaseEstimate(_message.Message):
    __slots__ = ("index", "dataset", "cost", "mechanism", "plan_json")
    INDEX_FIELD_NUMBER: _ClassVar[int]
    DATASET_FIELD_NUMBER: _ClassVar[int]
    COST_FIELD_NUMBER: _ClassVar[int]
    MECHANISM_FIELD_NUMBER: _ClassVar[int]
    PLAN_JSON_FIELD_NUMBER: _ClassVar[int]
    index: int
    dataset: str
    cost: Cost
    mechanism: str
    plan_json: str
    def __init__(self, index: _Optional[int] = ..., dataset: _Optional[str] = ..., cost: _Optional[_Union[Cost, _Mapping]] = ..., mechanism: _Optional[str] = ..., plan_json: _Optional[str] = ...) -> None: ...

class CostEstimate(_message.Message):
    __slots__ = ("total", "releases", "budgets", "fits_budget")
    TOTAL_FIELD_NUMBER: _ClassVar[int]
    RELEASES_FIELD_NUMBER: _ClassVar[int]
    BUDGETS_FIELD_NUMBER: _ClassVar[int]
    FITS_BUDGET_FIELD_NUMBER: _ClassVar[int]
    total: Cost
    releases: _containers.RepeatedCompositeFieldContainer[ReleaseEstimate]
    budgets: _containers.RepeatedCompositeFieldContainer[Budget]
    fits_budget: bool
    def __init__(self, total: _Optional[_Union[Cost, _Mapping]] = ..., releases: _Optional[_Iterable[_Union[ReleaseEstimate, _Mapping]]] = ..., budgets: _Optional[_Iterable[_Union[Budget, _Mapping]]] = ..., fits_budget: _Optional[bool] = ...) -> None: ...

class Column(_message.Message):
    __slots__ = ("name", "type", "has_bounds", "lower", "upper", "categories", "nullable", "description", "max_keys", "max_groups_per_person")
    NAME_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    HAS_BOUNDS_FIELD_NUMBER: _ClassVar[int]
    LOWER_FIELD_NUMBER: _ClassVar[int]
    UPPER_FIELD_NUMBER: _ClassVar[int]
    CATEGORIES_FIELD_NUMBER: _ClassVar[int]
    NULLABLE_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    MAX_KEYS_FIELD_NUMBER: _ClassVar[int]
    MAX_GROUPS_PER_PERSON_FIELD_NUMBER: _ClassVar[int]
    name: str
    type: str
    has_bounds: bool
    lower: float
    upper: float
    categories: _containers.RepeatedScalarFieldContainer[str]
    nullable: bool
    description: str
    max_keys: int
    max_groups_per_person: int
    def __init__(self, name: _Optional[str] = ..., type: _Optional[str] = ..., has_bounds: _Optional[bool] = ..., lower: _Optional[float] = ..., upper: _Optional[float] = ..., categories: _Optional[_Iterable[str]] = ..., nullable: _Optional[bool] = ..., description: _Optional[str] = ..., max_keys: _Optional[int] = ..., max_groups_per_person: _Optional[int] = ...) -> None: ...

class PrivacyUnit(_message.Message):
    __slots__ = ("identifier", "max_rows_per_person")
    IDENTIFIER_FIELD_NUMBER: _ClassVar[int]
    MAX_ROWS_PER_PERSON_FIELD_NUMBER: _ClassVar[int]
    identifier: str
    max_rows_per_person: int
    def __init__(self, identifier: _Optional[str] = ..., max_rows_per_person: _Optional[int] = ...) -> None: ...

class DatasetInfo(_message.Message):
    __slots__ = ("name", "description", "owner", "columns", "privacy_unit", "max_rows", "privacy_definition", "equivalent_delta", "rows_dropped", "persons_truncated", "policy_toml", "budget", "draft", "proposed_schema_toml", "rows_cleaned", "version", "versions")
    NAME_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    OWNER_FIELD_NUMBER: _ClassVar[int]
    COLUMNS_FIELD_NUMBER: _ClassVar[int]
    PRIVACY_UNIT_FIELD_NUMBER: _ClassVar[int]
    MAX_ROWS_FIELD_NUMBER: _ClassVar[int]
    PRIVACY_DEFINITION_FIELD_NUMBER: _ClassVar[int]
    EQUIVALENT_DELTA_FIELD_NUMBER: _ClassVar[int]
    ROWS_DROPPED_FIELD_NUMBER: _ClassVar[int]
    PERSONS_TRUNCATED_FIELD_NUMBER: _ClassVar[int]
    POLICY_TOML_FIELD_NUMBER: _ClassVar[int]
    BUDGET_FIELD_NUMBER: _ClassVar[int]
    DRAFT_FIELD_NUMBER: _ClassVar[int]
    PROPOSED_SCHEMA_TOML_FIELD_NUMBER: _ClassVar[int]
    ROWS_CLEANED_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    VERSIONS_FIELD_NUMBER: _ClassVar[int]
    name: str
    description: str
    owner: str
    columns: _containers.RepeatedCompositeFieldContainer[Column]
    privacy_unit: PrivacyUnit
    max_rows: int
    privacy_definition: str
    equivalent_delta: float
    rows_dropped: int
    persons_truncated: int
    policy_toml: str
    budget: Budget
    draft: bool
    proposed_schema_toml: str
    rows_cleaned: int
    version: int
    versions: _containers.RepeatedCompositeFieldContainer[DatasetVersion]
    def __init__(self, name: _Optional[str] = ..., description: _Optional[str] = ..., owner: _Optional[str] = ..., columns: _Optional[_Iterable[_Union[Column, _Mapping]]] = ..., privacy_unit: _Optional[_Union[PrivacyUnit, _Mapping]] = ..., max_rows: _Optional[int] = ..., privacy_definition: _Optional[str] = ..., equivalent_delta: _Optional[float] = ..., rows_dropped: _Optional[int] = ..., persons_truncated: _Optional[int] = ..., policy_toml: _Optional[str] = ..., budget: _Optional[_Union[Budget, _Mapping]] = ..., draft: _Optional[bool] = ..., proposed_schema_toml: _Optional[str] = ..., rows_cleaned: _Optional[int] = ..., version: _Optional[int] = ..., versions: _Optional[_Iterable[_Union[DatasetVersion, _Mapping]]] = ...) -> None: ...

class DatasetVersion(_message.Message):
    __slots__ = ("version", "uploaded_by", "uploaded_at", "new_budget_period", "superseded_at", "stored")
    VERSION_FIELD_NUMBER: _ClassVar[int]
    UPLOADED_BY_FIELD_NUMBER: _ClassVar[int]
    UPLOADED_AT_FIELD_NUMBER: _ClassVar[int]
    NEW_BUDGET_PERIOD_FIELD_NUMBER: _ClassVar[int]
    SUPERSEDED_AT_FIELD_NUMBER: _ClassVar[int]
    STORED_FIELD_NUMBER: _ClassVar[int]
    version: int
    uploaded_by: str
    uploaded_at: _timestamp_pb2.Timestamp
    new_budget_period: bool
    superseded_at: _timestamp_pb2.Timestamp
    stored: bool
    def __init__(self, version: _Optional[int] = ..., uploaded_by: _Optional[str] = ..., uploaded_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., new_budget_period: _Optional[bool] = ..., superseded_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., stored: _Optional[bool] = ...) -> None: ...

class ListDatasetsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListDatasetsResponse(_message.Message):
    __slots__ = ("datasets",)
    DATASETS_FIELD_NUMBER: _ClassVar[int]
    datasets: _containers.RepeatedCompositeFieldContainer[DatasetInfo]
    def __init__(self, datasets: _Optional[_Iterable[_Union[DatasetInfo, _Mapping]]] = ...) -> None: ...

class DescribeDatasetRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class RegisterDatasetRequest(_message.Message):
    __slots__ = ("name", "schema_toml", "format", "data")
    NAME_FIELD_NUMBER: _ClassVar[int]
    SCHEMA_TOML_FIELD_NUMBER: _ClassVar[int]
    FORMAT_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    name: str
    schema_toml: str
    format: str
    data: bytes
    def __init__(self, name: _Optional[str] = ..., schema_toml: _Optional[str] = ..., format: _Optional[str] = ..., data: _Optional[bytes] = ...) -> None: ...

class UploadDatasetRequest(_message.Message):
    __slots__ = ("header", "chunk", "trailer")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    CHUNK_FIELD_NUMBER: _ClassVar[int]
    TRAILER_FIELD_NUMBER: _ClassVar[int]
    header: UploadHeader
    chunk: bytes
    trailer: UploadTrailer
    def __init__(self, header: _Optional[_Union[UploadHeader, _Mapping]] = ..., chunk: _Optional[bytes] = ..., trailer: _Optional[_Union[UploadTrailer, _Mapping]] = ...) -> None: ...

class UploadHeader(_message.Message):
    __slots__ = ("name", "schema_toml", "format", "size", "new_version", "new_budget_period", "clamp_to_bounds", "unknown_categories_to_other", "drop_invalid_rows", "expected_version")
    NAME_FIELD_NUMBER: _ClassVar[int]
    SCHEMA_TOML_FIELD_NUMBER: _ClassVar[int]
    FORMAT_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    NEW_VERSION_FIELD_NUMBER: _ClassVar[int]
    NEW_BUDGET_PERIOD_FIELD_NUMBER: _ClassVar[int]
    CLAMP_TO_BOUNDS_FIELD_NUMBER: _ClassVar[int]
    UNKNOWN_CATEGORIES_TO_OTHER_FIELD_NUMBER: _ClassVar[int]
    DROP_INVALID_ROWS_FIELD_NUMBER: _ClassVar[int]
    EXPECTED_VERSION_FIELD_NUMBER: _ClassVar[int]
    name: str
    schema_toml: str
    format: str
    size: int
    new_version: bool
    new_budget_period: bool
    clamp_to_bounds: bool
    unknown_categories_to_other: bool
    drop_invalid_rows: bool
    expected_version: int
    def __init__(self, name: _Optional[str] = ..., schema_toml: _Optional[str] = ..., format: _Optional[str] = ..., size: _Optional[int] = ..., new_version: _Optional[bool] = ..., new_budget_period: _Optional[bool] = ..., clamp_to_bounds: _Optional[bool] = ..., unknown_categories_to_other: _Optional[bool] = ..., drop_invalid_rows: _Optional[bool] = ..., expected_version: _Optional[int] = ...) -> None: ...

class UploadTrailer(_message.Message):
    __slots__ = ("sha256",)
    SHA256_FIELD_NUMBER: _ClassVar[int]
    sha256: str
    def __init__(self, sha256: _Optional[str] = ...) -> None: ...

class GrantAccessRequest(_message.Message):
    __slots__ = ("dataset", "principal", "epsilon_cap", "delta_cap", "rho_cap", "expires_at")
    DATASET_FIELD_NUMBER: _ClassVar[int]
    PRINCIPAL_FIELD_NUMBER: _ClassVar[int]
    EPSILON_CAP_FIELD_NUMBER: _ClassVar[int]
    DELTA_CAP_FIELD_NUMBER: _ClassVar[int]
    RHO_CAP_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_AT_FIELD_NUMBER: _ClassVar[int]
    dataset: str
    principal: str
    epsilon_cap: str
    delta_cap: str
    rho_cap: str
    expires_at: _timestamp_pb2.Timestamp
    def __init__(self, dataset: _Optional[str] = ..., principal: _Optional[str] = ..., epsilon_cap: _Optional[str] = ..., delta_cap: _Optional[str] = ..., rho_cap: _Optional[str] = ..., expires_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class Grant(_message.Message):
    __slots__ = ("dataset", "principal", "epsilon_cap", "delta_cap", "rho_cap", "expires_at")
    DATASET_FIELD_NUMBER: _ClassVar[int]
    PRINCIPAL_FIELD_NUMBER: _ClassVar[int]
    EPSILON_CAP_FIELD_NUMBER: _ClassVar[int]
    DELTA_CAP_FIELD_NUMBER: _ClassVar[int]
    RHO_CAP_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_AT_FIELD_NUMBER: _ClassVar[int]
    dataset: str
    principal: str
    epsilon_cap: str
    delta_cap: str
    rho_cap: str
    expires_at: _timestamp_pb2.Timestamp
    def __init__(self, dataset: _Optional[str] = ..., principal: _Optional[str] = ..., epsilon_cap: _Optional[str] = ..., delta_cap: _Optional[str] = ..., rho_cap: _Optional[str] = ..., expires_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class RevokeAccessRequest(_message.Message):
    __slots__ = ("dataset", "principal")
    DATASET_FIELD_NUMBER: _ClassVar[int]
    PRINCIPAL_FIELD_NUMBER: _ClassVar[int]
    dataset: str
    principal: str
    def __init__(self, dataset: _Optional[str] = ..., principal: _Optional[str] = ...) -> None: ...

class RevokeAccessResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class SetPolicyRequest(_message.Message):
    __slots__ = ("dataset", "policy_toml")
    DATASET_FIELD_NUMBER: _ClassVar[int]
    POLICY_TOML_FIELD_NUMBER: _ClassVar[int]
    dataset: str
    policy_toml: str
    def __init__(self, dataset: _Optional[str] = ..., policy_toml: _Optional[str] = ...) -> None: ...

class GetPolicyRequest(_message.Message):
    __slots__ = ("dataset", "history")
    DATASET_FIELD_NUMBER: _ClassVar[int]
    HISTORY_FIELD_NUMBER: _ClassVar[int]
    dataset: str
    history: bool
    def __init__(self, dataset: _Optional[str] = ..., history: _Optional[bool] = ...) -> None: ...

class PolicyVersion(_message.Message):
    __slots__ = ("version", "policy_toml", "set_by", "set_at")
    VERSION_FIELD_NUMBER: _ClassVar[int]
    POLICY_TOML_FIELD_NUMBER: _ClassVar[int]
    SET_BY_FIELD_NUMBER: _ClassVar[int]
    SET_AT_FIELD_NUMBER: _ClassVar[int]
    version: int
    policy_toml: str
    set_by: str
    set_at: _timestamp_pb2.Timestamp
    def __init__(self, version: _Optional[int] = ..., policy_toml: _Optional[str] = ..., set_by: _Optional[str] = ..., set_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class DatasetPolicy(_message.Message):
    __slots__ = ("dataset", "versions", "dataset_spent")
    DATASET_FIELD_NUMBER: _ClassVar[int]
    VERSIONS_FIELD_NUMBER: _ClassVar[int]
    DATASET_SPENT_FIELD_NUMBER: _ClassVar[int]
    dataset: str
    versions: _containers.RepeatedCompositeFieldContainer[PolicyVersion]
    dataset_spent: Cost
    def __init__(self, dataset: _Optional[str] = ..., versions: _Optional[_Iterable[_Union[PolicyVersion, _Mapping]]] = ..., dataset_spent: _Optional[_Union[Cost, _Mapping]] = ...) -> None: ...

class GetDatasetUsageRequest(_message.Message):
    __slots__ = ("dataset",)
    DATASET_FIELD_NUMBER: _ClassVar[int]
    dataset: str
    def __init__(self, dataset: _Optional[str] = ...) -> None: ...

class GetQualityReportRequest(_message.Message):
    __slots__ = ("name", "schema_toml")
    NAME_FIELD_NUMBER: _ClassVar[int]
    SCHEMA_TOML_FIELD_NUMBER: _ClassVar[int]
    name: str
    schema_toml: str
    def __init__(self, name: _Optional[str] = ..., schema_toml: _Optional[str] = ...) -> None: ...

class ColumnQuality(_message.Message):
    __slots__ = ("name", "type", "nulls", "nan", "not_of_type", "out_of_bounds", "unknown_categories", "examples")
    NAME_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    NULLS_FIELD_NUMBER: _ClassVar[int]
    NAN_FIELD_NUMBER: _ClassVar[int]
    NOT_OF_TYPE_FIELD_NUMBER: _ClassVar[int]
    OUT_OF_BOUNDS_FIELD_NUMBER: _ClassVar[int]
    UNKNOWN_CATEGORIES_FIELD_NUMBER: _ClassVar[int]
    EXAMPLES_FIELD_NUMBER: _ClassVar[int]
    name: str
    type: str
    nulls: int
    nan: int
    not_of_type: int
    out_of_bounds: int
    unknown_categories: int
    examples: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, name: _Optional[str] = ..., type: _Optional[str] = ..., nulls: _Optional[int] = ..., nan: _Optional[int] = ..., not_of_type: _Optional[int] = ..., out_of_bounds: _Optional[int] = ..., unknown_categories: _Optional[int] = ..., examples: _Optional[_Iterable[str]] = ...) -> None: ...

class QualityReport(_message.Message):
    __slots__ = ("name", "draft", "rows", "columns", "missing_columns", "undeclared_columns", "persons_over_limit", "rows_over_limit", "text")
    NAME_FIELD_NUMBER: _ClassVar[int]
    DRAFT_FIELD_NUMBER: _ClassVar[int]
    ROWS_FIELD_NUMBER: _ClassVar[int]
    COLUMNS_FIELD_NUMBER: _ClassVar[int]
    MISSING_COLUMNS_FIELD_NUMBER: _ClassVar[int]
    UNDECLARED_COLUMNS_FIELD_NUMBER: _ClassVar[int]
    PERSONS_OVER_LIMIT_FIELD_NUMBER: _ClassVar[int]
    ROWS_OVER_LIMIT_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    name: str
    draft: bool
    rows: int
    columns: _containers.RepeatedCompositeFieldContainer[ColumnQuality]
    missing_columns: _containers.RepeatedScalarFieldContainer[str]
    undeclared_columns: _containers.RepeatedScalarFieldContainer[str]
    persons_over_limit: int
    rows_over_limit: int
    text: str
    def __init__(self, name: _Optional[str] = ..., draft: _Optional[bool] = ..., rows: _Optional[int] = ..., columns: _Optional[_Iterable[_Union[ColumnQuality, _Mapping]]] = ..., missing_columns: _Optional[_Iterable[str]] = ..., undeclared_columns: _Optional[_Iterable[str]] = ..., persons_over_limit: _Optional[int] = ..., rows_over_limit: _Optional[int] = ..., text: _Optional[str] = ...) -> None: ...

class DeleteDatasetRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class DeleteDatasetResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ConfirmDatasetRequest(_message.Message):
    __slots__ = ("name", "schema_toml", "clamp_to_bounds", "unknown_categories_to_other", "drop_invalid_rows")
    NAME_FIELD_NUMBER: _ClassVar[int]
    SCHEMA_TOML_FIELD_NUMBER: _ClassVar[int]
    CLAMP_TO_BOUNDS_FIELD_NUMBER: _ClassVar[int]
    UNKNOWN_CATEGORIES_TO_OTHER_FIELD_NUMBER: _ClassVar[int]
    DROP_INVALID_ROWS_FIELD_NUMBER: _ClassVar[int]
    name: str
    schema_toml: str
    clamp_to_bounds: bool
    unknown_categories_to_other: bool
    drop_invalid_rows: bool
    def __init__(self, name: _Optional[str] = ..., schema_toml: _Optional[str] = ..., clamp_to_bounds: _Optional[bool] = ..., unknown_categories_to_other: _Optional[bool] = ..., drop_invalid_rows: _Optional[bool] = ...) -> None: ...

class DatasetUsage(_message.Message):
    __slots__ = ("dataset", "spent", "policy_toml", "jobs", "releases", "grants", "version", "versions")
    DATASET_FIELD_NUMBER: _ClassVar[int]
    SPENT_FIELD_NUMBER: _ClassVar[int]
    POLICY_TOML_FIELD_NUMBER: _ClassVar[int]
    JOBS_FIELD_NUMBER: _ClassVar[int]
    RELEASES_FIELD_NUMBER: _ClassVar[int]
    GRANTS_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    VERSIONS_FIELD_NUMBER: _ClassVar[int]
    dataset: str
    spent: Cost
    policy_toml: str
    jobs: int
    releases: int
    grants: _containers.RepeatedCompositeFieldContainer[Budget]
    version: int
    versions: _containers.RepeatedCompositeFieldContainer[DatasetVersion]
    def __init__(self, dataset: _Optional[str] = ..., spent: _Optional[_Union[Cost, _Mapping]] = ..., policy_toml: _Optional[str] = ..., jobs: _Optional[int] = ..., releases: _Optional[int] = ..., grants: _Optional[_Iterable[_Union[Budget, _Mapping]]] = ..., version: _Optional[int] = ..., versions: _Optional[_Iterable[_Union[DatasetVersion, _Mapping]]] = ...) -> None: ...

class Budget(_message.Message):
    __slots__ = ("dataset", "epsilon_cap", "epsilon_spent", "epsilon_remaining", "delta_cap", "delta_spent", "delta_remaining", "rho_cap", "rho_spent", "rho_remaining", "privacy_definition", "epsilon_equivalent_remaining", "delta_equivalent_remaining", "expires_at", "refresh", "next_refresh", "lifetime_epsilon_cap", "lifetime_epsilon_spent", "lifetime_rho_cap", "lifetime_rho_spent", "lifetime_delta_cap", "lifetime_delta_spent", "principal")
    DATASET_FIELD_NUMBER: _ClassVar[int]
    EPSILON_CAP_FIELD_NUMBER: _ClassVar[int]
    EPSILON_SPENT_FIELD_NUMBER: _ClassVar[int]
    EPSILON_REMAINING_FIELD_NUMBER: _ClassVar[int]
    DELTA_CAP_FIELD_NUMBER: _ClassVar[int]
    DELTA_SPENT_FIELD_NUMBER: _ClassVar[int]
    DELTA_REMAINING_FIELD_NUMBER: _ClassVar[int]
    RHO_CAP_FIELD_NUMBER: _ClassVar[int]
    RHO_SPENT_FIELD_NUMBER: _ClassVar[int]
    RHO_REMAINING_FIELD_NUMBER: _ClassVar[int]
    PRIVACY_DEFINITION_FIELD_NUMBER: _ClassVar[int]
    EPSILON_EQUIVALENT_REMAINING_FIELD_NUMBER: _ClassVar[int]
    DELTA_EQUIVALENT_REMAINING_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_AT_FIELD_NUMBER: _ClassVar[int]
    REFRESH_FIELD_NUMBER: _ClassVar[int]
    NEXT_REFRESH_FIELD_NUMBER: _ClassVar[int]
    LIFETIME_EPSILON_CAP_FIELD_NUMBER: _ClassVar[int]
    LIFETIME_EPSILON_SPENT_FIELD_NUMBER: _ClassVar[int]
    LIFETIME_RHO_CAP_FIELD_NUMBER: _ClassVar[int]
    LIFETIME_RHO_SPENT_FIELD_NUMBER: _ClassVar[int]
    LIFETIME_DELTA_CAP_FIELD_NUMBER: _ClassVar[int]
    LIFETIME_DELTA_SPENT_FIELD_NUMBER: _ClassVar[int]
    PRINCIPAL_FIELD_NUMBER: _ClassVar[int]
    dataset: str
    epsilon_cap: str
    epsilon_spent: str
    epsilon_remaining: str
    delta_cap: str
    delta_spent: str
    delta_remaining: str
    rho_cap: str
    rho_spent: str
    rho_remaining: str
    privacy_definition: str
    epsilon_equivalent_remaining: str
    delta_equivalent_remaining: str
    expires_at: _timestamp_pb2.Timestamp
    refresh: str
    next_refresh: _timestamp_pb2.Timestamp
    lifetime_epsilon_cap: str
    lifetime_epsilon_spent: str
    lifetime_rho_cap: str
    lifetime_rho_spent: str
    lifetime_delta_cap: str
    lifetime_delta_spent: str
    principal: str
    def __init__(self, dataset: _Optional[str] = ..., epsilon_cap: _Optional[str] = ..., epsilon_spent: _Optional[str] = ..., epsilon_remaining: _Optional[str] = ..., delta_cap: _Optional[str] = ..., delta_spent: _Optional[str] = ..., delta_remaining: _Optional[str] = ..., rho_cap: _Optional[str] = ..., rho_spent: _Optional[str] = ..., rho_remaining: _Optional[str] = ..., privacy_definition: _Optional[str] = ..., epsilon_equivalent_remaining: _Optional[str] = ..., delta_equivalent_remaining: _Optional[str] = ..., expires_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., refresh: _Optional[str] = ..., next_refresh: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., lifetime_epsilon_cap: _Optional[str] = ..., lifetime_epsilon_spent: _Optional[str] = ..., lifetime_rho_cap: _Optional[str] = ..., lifetime_rho_spent: _Optional[str] = ..., lifetime_delta_cap: _Optional[str] = ..., lifetime_delta_spent: _Optional[str] = ..., principal: _Optional[str] = ...) -> None: ...

class GetBudgetRequest(_message.Message):
    __slots__ = ("dataset",)
    DATASET_FIELD_NUMBER: _ClassVar[int]
    dataset: str
    def __init__(self, dataset: _Optional[str] = ...) -> None: ...

class GetBudgetResponse(_message.Message):
    __slots__ = ("budgets",)
    BUDGETS_FIELD_NUMBER: _ClassVar[int]
    budgets: _containers.RepeatedCompositeFieldContainer[Budget]
    def __init__(self, budgets: _Optional[_Iterable[_Union[Budget, _Mapping]]] = ...) -> None: ...

class VerifyLedgerRequest(_message.Message):
    __slots__ = ("expected_head",)
    EXPECTED_HEAD_FIELD_NUMBER: _ClassVar[int]
    expected_head: str
    def __init__(self, expected_head: _Optional[str] = ...) -> None: ...

class LedgerVerification(_message.Message):
    __slots__ = ("ok", "entries", "head_hash", "bad_entry", "problem")
    OK_FIELD_NUMBER: _ClassVar[int]
    ENTRIES_FIELD_NUMBER: _ClassVar[int]
    HEAD_HASH_FIELD_NUMBER: _ClassVar[int]
    BAD_ENTRY_FIELD_NUMBER: _ClassVar[int]
    PROBLEM_FIELD_NUMBER: _ClassVar[int]
    ok: bool
    entries: int
    head_hash: str
    bad_entry: int
    problem: str
    def __init__(self, ok: _Optional[bool] = ..., entries: _Optional[int] = ..., head_hash: _Optional[str] = ..., bad_entry: _Optional[int] = ..., problem: _Optional[str] = ...) -> None: ...

class GetLedgerHeadRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class LedgerHead(_message.Message):
    __slots__ = ("seq", "hash")
    SEQ_FIELD_NUMBER: _ClassVar[int]
    HASH_FIELD_NUMBER: _ClassVar[int]
    seq: int
    hash: str
    def __init__(self, seq: _Optional[int] = ..., hash: _Optional[str] = ...) -> None: ...

class ListBudgetsRequest(_message.Message):
    __slots__ = ("dataset", "principal")
    DATASET_FIELD_NUMBER: _ClassVar[int]
    PRINCIPAL_FIELD_NUMBER: _ClassVar[int]
    dataset: str
    principal: str
    def __init__(self, dataset: _Optional[str] = ..., principal: _Optional[str] = ...) -> None: ...

class ListBudgetsResponse(_message.Message):
    __slots__ = ("budgets",)
    BUDGETS_FIELD_NUMBER: _ClassVar[int]
    budgets: _containers.RepeatedCompositeFieldContainer[Budget]
    def __init__(self, budgets: _Optional[_Iterable[_Union[Budget, _Mapping]]] = ...) -> None: ...

class ListLedgerRequest(_message.Message):
    __slots__ = ("principal", "dataset", "since", "until", "page_size", "page_token")
    PRINCIPAL_FIELD_NUMBER: _ClassVar[int]
    DATASET_FIELD_NUMBER: _ClassVar[int]
    SINCE_FIELD_NUMBER: _ClassVar[int]
    UNTIL_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    principal: str
    dataset: str
    since: _timestamp_pb2.Timestamp
    until: _timestamp_pb2.Timestamp
    page_size: int
    page_token: str
    def __init__(self, principal: _Optional[str] = ..., dataset: _Optional[str] = ..., since: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., until: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class LedgerEntry(_message.Message):
    __slots__ = ("seq", "kind", "principal", "dataset", "job_id", "release_index", "cost", "created_at", "prev_hash", "hash", "dataset_version")
    SEQ_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    PRINCIPAL_FIELD_NUMBER: _ClassVar[int]
    DATASET_FIELD_NUMBER: _ClassVar[int]
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    RELEASE_INDEX_FIELD_NUMBER: _ClassVar[int]
    COST_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    PREV_HASH_FIELD_NUMBER: _ClassVar[int]
    HASH_FIELD_NUMBER: _ClassVar[int]
    DATASET_VERSION_FIELD_NUMBER: _ClassVar[int]
    seq: int
    kind: str
    principal: str
    dataset: str
    job_id: str
    release_index: int
    cost: Cost
    created_at: _timestamp_pb2.Timestamp
    prev_hash: str
    hash: str
    dataset_version: int
    def __init__(self, seq: _Optional[int] = ..., kind: _Optional[str] = ..., principal: _Optional[str] = ..., dataset: _Optional[str] = ..., job_id: _Optional[str] = ..., release_index: _Optional[int] = ..., cost: _Optional[_Union[Cost, _Mapping]] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., prev_hash: _Optional[str] = ..., hash: _Optional[str] = ..., dataset_version: _Optional[int] = ...) -> None: ...

class ListLedgerResponse(_message.Message):
    __slots__ = ("entries", "next_page_token")
    ENTRIES_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    entries: _containers.RepeatedCompositeFieldContainer[LedgerEntry]
    next_page_token: str
    def __init__(self, entries: _Optional[_Iterable[_Union[LedgerEntry, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class Principal(_message.Message):
    __slots__ = ("name", "role", "created_at")
    NAME_FIELD_NUMBER: _ClassVar[int]
    ROLE_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    name: str
    role: Role
    created_at: _timestamp_pb2.Timestamp
    def __init__(self, name: _Optional[str] = ..., role: _Optional[_Union[Role, str]] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class CreatePrincipalRequest(_message.Message):
    __slots__ = ("name", "role")
    NAME_FIELD_NUMBER: _ClassVar[int]
    ROLE_FIELD_NUMBER: _ClassVar[int]
    name: str
    role: Role
    def __init__(self, name: _Optional[str] = ..., role: _Optional[_Union[Role, str]] = ...) -> None: ...

class CreatePrincipalResponse(_message.Message):
    __slots__ = ("principal", "token")
    PRINCIPAL_FIELD_NUMBER: _ClassVar[int]
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    principal: Principal
    token: str
    def __init__(self, principal: _Optional[_Union[Principal, _Mapping]] = ..., token: _Optional[str] = ...) -> None: ...

class ListPrincipalsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListPrincipalsResponse(_message.Message):
    __slots__ = ("principals",)
    PRINCIPALS_FIELD_NUMBER: _ClassVar[int]
    principals: _containers.RepeatedCompositeFieldContainer[Principal]
    def __init__(self, principals: _Optional[_Iterable[_Union[Principal, _Mapping]]] = ...) -> None: ...
