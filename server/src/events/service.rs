//! The `quire.v1.Events` gRPC face of the log API's events: requests
//! decoded into domain calls, answers encoded, errors mapped to statuses
//! as the log service maps them. No rule lives here.

use quire_core::event::KeyField;
use quire_proto::v1::events_server::Events as EventsRpc;
use quire_proto::v1::{
    AddEventsRequest, AddEventsResponse, EraseEventRequest, EventsPage, GetEventRequest,
    GetEventResponse, KeyPage, MapProof, ProvenEvent, SealedEvent, SearchEventsRequest,
    SearchKeyRequest,
};
use quire_proto::{event_from_wire, hashes_to_wire};
use tokio_stream::StreamExt as _;
use tonic::{Request, Response, Status};

use crate::api::{ApiError, EventInput, KeyQuery, LogApi};
use crate::grpc::{caller, status, BoxStream};
use crate::store::Storage;

/// The gRPC service over a [`LogApi`]'s events.
pub struct GrpcEvents<S: Storage> {
    api: LogApi<S>,
}

impl<S: Storage> GrpcEvents<S> {
    /// The face of `api`.
    pub fn new(api: LogApi<S>) -> Self {
        GrpcEvents { api }
    }
}

#[tonic::async_trait]
impl<S: Storage> EventsRpc for GrpcEvents<S> {
    async fn add_events(
        &self,
        req: Request<AddEventsRequest>,
    ) -> Result<Response<AddEventsResponse>, Status> {
        let who = caller(&req);
        let on_behalf = on_behalf_of(&req)?;
        let req = req.into_inner();
        let events = req
            .events
            .into_iter()
            .enumerate()
            .map(|(i, e)| {
                let event = event_from_wire(&e)
                    .map_err(|err| status(&ApiError::Invalid(format!("event {i}: {err}"))))?;
                let payload = (!e.payload.is_empty()).then_some(e.payload);
                Ok(EventInput { event, payload })
            })
            .collect::<Result<Vec<_>, Status>>()?;
        let w = self
            .api
            .add_events_for(&who, &req.log, events, on_behalf)
            .await
            .map_err(|e| status(&e))?;
        Ok(Response::new(written(w)))
    }

    async fn erase_event(
        &self,
        req: Request<EraseEventRequest>,
    ) -> Result<Response<AddEventsResponse>, Status> {
        let who = caller(&req);
        let on_behalf = on_behalf_of(&req)?;
        let req = req.into_inner();
        let w = self
            .api
            .erase_event_for(&who, &req.log, req.index, &req.reason, on_behalf)
            .await
            .map_err(|e| status(&e))?;
        Ok(Response::new(written(w)))
    }

    async fn get_event(
        &self,
        req: Request<GetEventRequest>,
    ) -> Result<Response<GetEventResponse>, Status> {
        let who = caller(&req);
        let req = req.into_inner();
        let e = self
            .api
            .event(&who, &req.log, req.index)
            .await
            .map_err(|e| status(&e))?;
        let (payload, salt) = e.payload.map(|(p, s)| (p, s.to_vec())).unwrap_or_default();
        Ok(Response::new(GetEventResponse {
            index: e.index,
            envelope: e.envelope,
            payload,
            salt,
            inclusion_proof: hashes_to_wire(&e.proof),
            checkpoint: e.checkpoint,
            erased_by: e.erased_by,
        }))
    }

    type SearchEventsStream = BoxStream<EventsPage>;

    async fn search_events(
        &self,
        req: Request<SearchEventsRequest>,
    ) -> Result<Response<Self::SearchEventsStream>, Status> {
        let who = caller(&req);
        let req = req.into_inner();
        let runs = self
            .api
            .search_events(&who, &req.log, req.from_ms, req.to_ms, req.limit)
            .await
            .map_err(|e| status(&e))?;
        Ok(Response::new(Box::pin(runs.map(|r| {
            r.map(|r| EventsPage {
                checkpoint: r.checkpoint.to_vec(),
                first_index: r.first,
                envelopes: r.envelopes,
                left: hashes_to_wire(&r.left),
                consistency: hashes_to_wire(&r.consistency),
            })
            .map_err(|e| status(&e))
        }))))
    }

    type SearchKeyStream = BoxStream<KeyPage>;

    async fn search_key(
        &self,
        req: Request<SearchKeyRequest>,
    ) -> Result<Response<Self::SearchKeyStream>, Status> {
        let who = caller(&req);
        let req = req.into_inner();
        let field = KeyField::parse(&req.field).ok_or_else(|| {
            status(&ApiError::Invalid(format!(
                "field {:?} is not a keyed field: actor, action, resource or type",
                req.field
            )))
        })?;
        let query = KeyQuery {
            field,
            value: req.value,
            before: req.before,
            from_ms: req.from_ms,
            limit: req.limit,
        };
        let pages = self
            .api
            .search_key(&who, &req.log, query)
            .await
            .map_err(|e| status(&e))?;
        Ok(Response::new(Box::pin(
            pages.map(|p| p.map(key_page).map_err(|e| status(&e))),
        )))
    }
}

/// A page of a search by key on the wire.
pub fn key_page(p: crate::api::KeyPage) -> KeyPage {
    let (head, map_proof) = match p.head {
        Some((h, m)) => (
            Some(proven(h)),
            Some(MapProof {
                siblings: hashes_to_wire(&m.siblings),
                leaf_key: m.leaf.map(|(k, _)| k.0.to_vec()).unwrap_or_default(),
                leaf_index: m.leaf.map_or(0, |(_, i)| i),
            }),
        ),
        None => (None, None),
    };
    KeyPage {
        checkpoint: p.checkpoint.to_vec(),
        head,
        map_proof,
        events: p.events.into_iter().map(proven).collect(),
    }
}

/// An event and its proof on the wire.
fn proven(e: crate::api::ProvenEvent) -> ProvenEvent {
    ProvenEvent {
        index: e.index,
        envelope: e.envelope,
        inclusion_proof: hashes_to_wire(&e.proof),
    }
}

/// The submitter a replica of the formation writes for
/// ([`crate::replica::ON_BEHALF_OF`]), when the request names one.
///
/// # Errors
/// `INVALID_ARGUMENT` for a value that is not base64 of UTF-8 text.
fn on_behalf_of<T>(req: &Request<T>) -> Result<Option<String>, Status> {
    let Some(v) = req.metadata().get_bin(crate::replica::ON_BEHALF_OF) else {
        return Ok(None);
    };
    let bytes = v.to_bytes().map_err(|_| {
        Status::invalid_argument(format!("{}: not base64", crate::replica::ON_BEHALF_OF))
    })?;
    String::from_utf8(bytes.to_vec()).map(Some).map_err(|_| {
        Status::invalid_argument(format!("{}: not UTF-8 text", crate::replica::ON_BEHALF_OF))
    })
}

fn written(w: crate::api::WrittenEvents) -> AddEventsResponse {
    AddEventsResponse {
        log: w.origin,
        events: w
            .events
            .into_iter()
            .map(|s| SealedEvent {
                index: s.index,
                envelope: s.envelope,
                salt: s.salt.map(|s| s.to_vec()).unwrap_or_default(),
            })
            .collect(),
        checkpoint: w.checkpoint,
    }
}
