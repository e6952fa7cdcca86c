//! A typed client of the `quire.v1.Events` service: add events (never
//! retried: each event is new, so a retry would log it twice; a call whose
//! answer was lost is looked up by its caller) and read one back.

use std::time::Duration;

use quire_core::event::KeyField;
use quire_proto::v1::events_client::EventsClient;
use quire_proto::v1::{
    AddEventsRequest, AddEventsResponse, EraseEventRequest, Event, EventsPage, GetEventRequest,
    GetEventResponse, KeyPage, SearchEventsRequest, SearchKeyRequest,
};
use tonic::transport::Channel;

use super::{call_once, call_read, Bearer, Endpoint, RpcError};

/// A connection to one server's events service.
pub struct EventsRpc {
    client: EventsClient<tonic::service::interceptor::InterceptedService<Channel, Bearer>>,
    timeout: Duration,
}

impl EventsRpc {
    /// Connects (TLS for `https://`).
    ///
    /// # Errors
    /// As [`Endpoint::channel`].
    pub async fn connect(ep: &Endpoint) -> Result<Self, RpcError> {
        let (channel, bearer) = ep.channel().await?;
        Ok(EventsRpc {
            client: EventsClient::with_interceptor(channel, bearer)
                .max_decoding_message_size(super::MAX_MESSAGE)
                .max_encoding_message_size(super::MAX_MESSAGE),
            timeout: ep.timeout,
        })
    }

    /// Appends `events` to the log `origin` (empty: the server's only
    /// log): the log's answer, unchecked.
    ///
    /// # Errors
    /// [`RpcError`]: the server's refusal or no answer (then the events
    /// may or may not be in the log).
    pub async fn add(
        &mut self,
        origin: &str,
        events: Vec<Event>,
    ) -> Result<AddEventsResponse, RpcError> {
        let mut c = self.client.clone();
        call_once(
            self.timeout,
            "AddEvents",
            c.add_events(AddEventsRequest {
                log: origin.to_owned(),
                events,
            }),
        )
        .await
    }

    /// Erases the payload of event `index` of the log `origin` for
    /// `reason`; the answer holds the erasure event, unchecked.
    ///
    /// # Errors
    /// [`RpcError`]: the server's refusal or no answer (then the erasure
    /// may or may not have been made).
    pub async fn erase(
        &mut self,
        origin: &str,
        index: u64,
        reason: &str,
    ) -> Result<AddEventsResponse, RpcError> {
        let mut c = self.client.clone();
        call_once(
            self.timeout,
            "EraseEvent",
            c.erase_event(EraseEventRequest {
                log: origin.to_owned(),
                index,
                reason: reason.to_owned(),
            }),
        )
        .await
    }

    /// Event `index` of the log `origin`, as the server answers it.
    ///
    /// # Errors
    /// [`RpcError`].
    pub async fn get(&mut self, origin: &str, index: u64) -> Result<GetEventResponse, RpcError> {
        let mut c = self.client.clone();
        call_read(
            self.timeout,
            "GetEvent",
            c.get_event(GetEventRequest {
                log: origin.to_owned(),
                index,
            }),
        )
        .await
    }

    /// The pages of a search of log time `[from_ms, to_ms)` (`to_ms` 0:
    /// no end), unchecked ([`crate::search::TimeRangeCheck`] checks them).
    ///
    /// # Errors
    /// [`RpcError`] when the stream cannot be opened; each page may carry
    /// the error that ended the stream.
    pub async fn search(
        &mut self,
        origin: &str,
        from_ms: u64,
        to_ms: u64,
        limit: u32,
    ) -> Result<tonic::Streaming<EventsPage>, RpcError> {
        let mut c = self.client.clone();
        let call = c.search_events(SearchEventsRequest {
            log: origin.to_owned(),
            from_ms,
            to_ms,
            limit,
        });
        call_read(self.timeout, "SearchEvents", call).await
    }

    /// The pages of a search of the events whose `field` is `value`,
    /// newest first (from `before` when given), stopping after the first
    /// logged before `from_ms` (0: none); unchecked
    /// ([`crate::keyed::KeyCheck`] checks them).
    ///
    /// # Errors
    /// [`RpcError`] when the stream cannot be opened; each page may carry
    /// the error that ended the stream.
    pub async fn search_key(
        &mut self,
        origin: &str,
        field: KeyField,
        value: &str,
        before: Option<u64>,
        from_ms: u64,
        limit: u32,
    ) -> Result<tonic::Streaming<KeyPage>, RpcError> {
        let mut c = self.client.clone();
        let call = c.search_key(SearchKeyRequest {
            log: origin.to_owned(),
            field: field.name().to_owned(),
            value: value.to_owned(),
            before,
            from_ms,
            limit,
        });
        call_read(self.timeout, "SearchKey", call).await
    }
}
