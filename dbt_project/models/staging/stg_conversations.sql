-- One row per conversation as polyai-sync last loaded it: the columns analytics use (no raw
-- JSON, no phone numbers).
select
    id,
    environment,
    channel,
    window_start,
    conversation_date,
    started_at,
    in_progress,
    coalesce(variant_id, '') as variant_id,
    variant_name,
    total_duration,
    polyai_duration,
    num_silences,
    num_ood,
    handoff,
    handoff_reason,
    handoff_destination,
    load_id,
    loaded_at
from {{ source('polyai', 'conversations') }}
