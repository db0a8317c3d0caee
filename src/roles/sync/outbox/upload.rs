//! The upload half of the outbox: a job's rendered recording (whole, or chunk by chunk with
//! its renditions) handed to the upload lane, and its answer journaled: a chunk is
//! acknowledged only with the controller's checksum, a 409 settles by the controller's
//! word, and a file that keeps failing ends the job `failed` with its audio kept.

use super::*;

impl Sync {
    /// Hands the rendered recording to the upload lane; its answer comes back through
    /// [`Sync::uploaded`].
    pub(super) fn start_upload(&mut self, row: OutboxRow) -> Result<(), SyncError> {
        let (job, controller_id) = self.controller_id(&row)?;
        let Some(job) = job else {
            return self.settle(
                &row,
                Delivery::GiveUp("job no longer in the journal".into()),
            );
        };
        if job.state.is_terminal() {
            return self.settle(&row, Delivery::GiveUp("the job has ended".into()));
        }
        let acked: HashSet<u32> = self
            .journal
            .uploads(&job.id)?
            .into_iter()
            .filter(|u| u.acknowledged_at_ms.is_some())
            .map(|u| u.chunk)
            .collect();
        let sending = match LiveChunk::parse(&row.body) {
            // A chunk rendered while the job captures: its own row.
            Some(live) if acked.contains(&live.chunk) => {
                return self.settle(&row, Delivery::Done);
            }
            Some(live) => match live.sending(&job, &acked) {
                Some(sending) => sending,
                None => {
                    let why = format!("chunk {} is not in chunks.json", live.chunk);
                    return self.settle(&row, Delivery::GiveUp(why));
                }
            },
            None => {
                let Ok(file) = serde_json::from_str::<RenderedFile>(&row.body) else {
                    return self.settle(&row, Delivery::GiveUp("unreadable upload row".into()));
                };
                if let Err(e) = self.apply(&job.id, Event::UploadStarted) {
                    return self.settle(&row, Delivery::Retry(e.to_string()));
                }
                if let Some(why) = enhancement_failure(&job.dir) {
                    self.enhancement_failed(&job, None, &why)?;
                }
                next_sending(&job, &file, &acked)
            }
        };
        if let Some(why) = &sending.enhancement_error {
            self.enhancement_failed(&job, Some(sending.chunk_index()), why)?;
        }
        let recording_id = job.recording_id.clone().unwrap_or_default();
        let id = row.id;
        let job_id = job.id.clone();
        // The bytes: a chunk's file, or the whole render (its file, or the WAV streamed
        // from the segments, hashed as it is sent).
        let body: Box<dyn UploadBody> = match (&sending.chunk, deliverable(&job.dir)) {
            (None, Some(d)) if sending.rendition != Some(Rendition::Enhanced) => d.body(),
            _ => Box::new(FileBody(sending.path.clone())),
        };
        let job_dir = job.dir.clone();
        let task = Box::new(move |c: &Client| {
            let request = UploadRequest {
                body: &*body,
                job_id: &controller_id,
                file_name: &sending.file_name,
                mime_type: &sending.mime_type,
                duration_seconds: sending.duration_seconds,
                rendition: sending.rendition,
                chunk: sending.chunk.map(|(i, _)| i),
                chunk_total: sending.chunk_total(),
            };
            let result = c.put_cache_file(&recording_id, &request);
            // 409: learn why from the job itself; the verdict decides, not the 409.
            let verdict = match &result {
                Err(CallError::Conflict(_)) => c.get_job(&controller_id).ok(),
                _ => None,
            };
            Done::Upload(Box::new(Uploaded {
                row,
                job_id,
                job_dir,
                sending,
                result,
                verdict,
            }))
        });
        self.hand_over(Lane::Upload, task, &[id]);
        Ok(())
    }

    /// An upload's answer, through the machine; an accepted upload is journaled with the
    /// checksum the controller stored.
    pub(in crate::roles::sync) fn uploaded(&mut self, up: Uploaded) -> Result<(), SyncError> {
        self.in_flight.remove(&up.row.id);
        let job_id = up.job_id.as_str();
        let (event, delivery) = match up.result {
            Ok(cached) => {
                log::info!(
                    "{job_id}: uploaded {}{} ({} bytes, {})",
                    untrusted(&up.sending.file_name),
                    up.sending
                        .rendition
                        .map_or(String::new(), |r| format!(" ({})", r.as_str())),
                    cached.size,
                    untrusted(&cached.checksum)
                );
                // The client checked the controller's checksum against the bytes it sent.
                let sha = cached.sha256_hex().unwrap_or_default();
                // Relative to the job's directory, like segment paths; a WAV streamed from
                // the segments as the view it was made from (never the controller's file
                // name: controller data is not a path).
                let name = match up.sending.path.is_dir() {
                    true => Path::new(crate::render::job::RENDER_FILE),
                    false => relative(&up.job_dir, &up.sending.path),
                };
                let chunk = up.sending.upload_row();
                self.journal.atomically(|j| {
                    j.record_upload(job_id, chunk, name, cached.size, &sha)?;
                    j.acknowledge_upload(job_id, chunk, now_ms())?;
                    Ok(())
                })?;
                let raw = up.sending.rendition == Some(Rendition::Raw);
                if up.sending.chunk.is_some() && !raw {
                    self.chunk_uploaded(job_id, &up.sending, &cached)?;
                }
                // A live chunk's row is done with its primary (its raw one goes first).
                if up.sending.is_live() && !raw {
                    return self.settle(&up.row, Delivery::Done);
                }
                if up.sending.is_partial() {
                    // More chunks to go: the row stays due, the next tick sends the next.
                    self.journal.reset_attempts(up.row.id)?;
                    return Ok(());
                }
                self.retention.soon = true;
                (
                    Event::UploadAccepted {
                        checksum_matches: true,
                    },
                    Delivery::Done,
                )
            }
            Err(CallError::ChecksumMismatch { sent, stored }) => {
                log::error!(
                    "{job_id}: controller stored {} for {}, we sent {sent}; sending it again",
                    untrusted(&stored),
                    untrusted(&up.sending.file_name)
                );
                // A chunk before the last did not complete the job; the last one did.
                let event = if up.sending.is_partial() {
                    Event::ChunkChecksumMismatch
                } else {
                    Event::UploadAccepted {
                        checksum_matches: false,
                    }
                };
                // A chunk sent while capturing is retried on its own row; once the job
                // is rendered, the machine re-issues the job's own row, which sends it.
                let capturing = self.journal.job(job_id)?.is_some_and(|j| {
                    matches!(
                        j.state,
                        JobState::Capturing
                            | JobState::Stopping
                            | JobState::Captured
                            | JobState::Rendering
                    )
                });
                let delivery = match up.sending.is_live() && capturing {
                    true => Delivery::Retry(format!("checksum {stored} is not ours")),
                    false => Delivery::Done,
                };
                (event, delivery)
            }
            Err(CallError::Conflict(body)) => {
                let verdict = up.verdict.as_ref().and_then(controller_event);
                log::warn!(
                    "{job_id}: upload refused (409 {}); verdict {verdict:?}",
                    untrusted(&body.error)
                );
                (
                    verdict.unwrap_or(Event::UploadRefused409),
                    Delivery::GiveUp(format!("409 {}", body.error)),
                )
            }
            Err(e) => {
                let retryable = e.is_retryable() && up.row.attempts + 1 < MAX_UPLOAD_ATTEMPTS;
                if retryable {
                    self.trouble("upload", &e);
                } else if e.is_retryable() {
                    log::error!(
                        "{job_id}: giving up the upload after {MAX_UPLOAD_ATTEMPTS} tries: {e}"
                    );
                }
                let delivery = if retryable {
                    Delivery::Retry(e.to_string())
                } else {
                    Delivery::GiveUp(e.to_string())
                };
                (
                    Event::UploadFailed {
                        retryable,
                        detail: e.to_string(),
                    },
                    delivery,
                )
            }
        };
        if let Err(e) = self.apply(job_id, event) {
            log::error!("{job_id}: {e}");
        }
        self.settle(&up.row, delivery)
    }

    /// Rakkr's `enhancement_failed` warning: the job asked for an enhanced rendition that
    /// could not be made (of its `chunk`), so the raw render is its primary. Once per job
    /// or chunk (its key).
    fn enhancement_failed(
        &mut self,
        job: &JobRow,
        chunk: Option<u32>,
        why: &str,
    ) -> Result<(), SyncError> {
        let mut event =
            HealthEvent::new("agent.recording_job.enhancement_failed", Severity::Warning);
        let key = match chunk {
            Some(k) => format!("{}-chunk-{k}-enhancement-failed", job.id),
            None => format!("{}-enhancement-failed", job.id),
        };
        event.id = Some(key.clone());
        event.recording_id = job.recording_id.clone();
        event.details.insert("reason".into(), why.into());
        if let Some(k) = chunk {
            event.details.insert("chunk".into(), k.into());
        }
        let body = serde_json::to_string(&event).unwrap_or_default();
        self.journal
            .enqueue(&NewOutboxItem::health_event(None, &key, body, now_ms()))?;
        Ok(())
    }

    /// Rakkr's `chunk_uploaded` health event, once per chunk (keyed by job and index).
    fn chunk_uploaded(
        &mut self,
        job_id: &str,
        sending: &Sending,
        cached: &CachedFile,
    ) -> Result<(), SyncError> {
        let Some(job) = self.journal.job(job_id)? else {
            return Ok(());
        };
        let mut event = HealthEvent::new("agent.recording_job.chunk_uploaded", Severity::Info);
        let key = format!("{job_id}-chunk-{}-uploaded", sending.chunk_index());
        event.id = Some(key.clone());
        event.recording_id = job.recording_id.clone();
        let details = &mut event.details;
        details.insert("chunk".into(), sending.chunk_index().into());
        details.insert("checksum".into(), cached.checksum.clone().into());
        details.insert("durationSeconds".into(), sending.duration_seconds.into());
        details.insert("fileName".into(), sending.file_name.clone().into());
        let body = serde_json::to_string(&event).unwrap_or_default();
        // Not ordered behind the job's upload row: it goes out as the chunk lands.
        self.journal
            .enqueue(&NewOutboxItem::health_event(None, &key, body, now_ms()))?;
        Ok(())
    }
}
