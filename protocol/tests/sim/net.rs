//! The simulated network and the node bookkeeping around it: time, latency, loss,
//! connections, byte counts, adding nodes and stepping their followers.

use super::*;

impl Sim {
    pub(super) fn new(cfg: Config) -> Self {
        let mut rng = ChaCha12Rng::seed_from_u64(cfg.seed);
        let epoch = Instant::now();
        let host_signing = SigningKey::from_bytes(&rng.random::<[u8; 32]>());
        let host_key = PeerKey::from(&host_signing);
        let fill_end = FILL_START + cfg.fill.as_micros() as Us;
        let window = (fill_end, fill_end + cfg.measure.as_micros() as Us);
        let join_len = join_request_len(&host_signing);
        let mut sim = Self {
            fill_left: cfg.listeners,
            audience: HostAudience::new(ROOM, AudiencePolicy::default(), epoch),
            state: stage(host_key),
            cfg,
            rng,
            epoch,
            now: 0,
            seq: 0,
            queue: BinaryHeap::new(),
            nodes: Vec::new(),
            by_key: HashMap::new(),
            present: Vec::new(),
            present_at: Vec::new(),
            relays: Vec::new(),
            carriers: Vec::new(),
            host: 0,
            host_signing: host_signing.clone(),
            last_view: Vec::new(),
            join_len,
            window,
            stats: Stats::default(),
        };
        let host = sim.add_node(Kind::Host, host_signing);
        sim.host = host;
        sim.nodes[host as usize].hears = true;
        sim.push(0, Ev::HostTick);
        sim.push(0, Ev::Sample);
        for i in 0..sim.cfg.relays {
            let signing = SigningKey::from_bytes(&sim.rng.random::<[u8; 32]>());
            let relay = sim.add_node(Kind::Relay, signing);
            sim.relays.push(relay);
            // Relays come first, 50 ms apart.
            sim.now = i as Us * 50 * MS;
            sim.follow(relay);
        }
        // Those made before the last relay hear of every relay too.
        let carriers = sim.carriers.clone();
        for node in &mut sim.nodes {
            if let Some(m) = node.m.as_mut() {
                m.subtree.set_carriers(carriers.iter().copied());
            }
        }
        sim.now = 0;
        sim.push(FILL_START, Ev::Arrive { churn: false });
        sim.push(window.0, Ev::Arrive { churn: true });
        sim.push(window.0, Ev::Depart);
        sim
    }

    pub(super) fn at(&self, t: Us) -> Instant {
        self.epoch + Duration::from_micros(t)
    }

    pub(super) fn wall(&self) -> Timestamp {
        WALL_START.plus_millis(self.now / MS)
    }

    pub(super) fn in_window(&self) -> bool {
        self.now >= self.window.0 && self.now < self.window.1
    }

    pub(super) fn push(&mut self, at: Us, ev: Ev) {
        self.seq += 1;
        self.queue.push(Queued {
            at,
            seq: self.seq,
            ev,
        });
    }

    pub(super) fn node(&self, id: Id) -> &Node {
        &self.nodes[id as usize]
    }

    pub(super) fn node_mut(&mut self, id: Id) -> &mut Node {
        &mut self.nodes[id as usize]
    }

    pub(super) fn machines(&mut self, id: Id) -> &mut Machines {
        self.nodes[id as usize]
            .m
            .as_deref_mut()
            .expect("a live node has its machines")
    }

    pub(super) fn alive(&self, id: Id) -> bool {
        self.node(id).alive
    }

    pub(super) fn id_of(&self, key: &PeerKey) -> Id {
        *self
            .by_key
            .get(key)
            .expect("every key in the run is a node")
    }

    pub(super) fn run(&mut self) {
        while let Some(Queued { at, ev, .. }) = self.queue.pop() {
            if at >= self.window.1 {
                break;
            }
            self.now = at;
            self.stats.events += 1;
            self.handle(ev);
        }
        self.now = self.window.1;
        self.finish();
    }

    // ---- the network ----

    pub(super) fn rtt(&self, a: Id, b: Id) -> Us {
        self.node(a).access + self.node(b).access
    }

    /// Retransmissions: each loss costs a probe timeout.
    pub(super) fn losses(&mut self, rtt: Us) -> Us {
        let mut extra = 0;
        for _ in 0..8 {
            if !self.rng.random_bool(self.cfg.loss) {
                break;
            }
            extra += rtt + PTO_EXTRA;
        }
        extra
    }

    pub(super) fn oneway(&mut self, a: Id, b: Id) -> Us {
        let rtt = self.rtt(a, b);
        rtt / 2 + self.rng.random_range(0..MAX_JITTER) + self.losses(rtt)
    }

    pub(super) fn connected(&self, a: Id, b: Id) -> bool {
        let n = self.node(a);
        n.asked == Some(b) || n.parent == Some(b) || n.up == Some(b) || n.kids.contains(&b)
    }

    /// The time to connect `a` to `b` (nothing if connected), counting the handshake's bytes.
    pub(super) fn connect(&mut self, a: Id, b: Id) -> Us {
        if self.connected(a, b) {
            return 0;
        }
        self.count_out(a, K_HANDSHAKE, HANDSHAKE_DIALER);
        self.count_in(a, K_HANDSHAKE, HANDSHAKE_LISTENER);
        if self.alive(b) {
            self.count_in(b, K_HANDSHAKE, HANDSHAKE_DIALER);
            self.count_out(b, K_HANDSHAKE, HANDSHAKE_LISTENER);
        }
        let rtt = self.rtt(a, b);
        rtt + self.losses(rtt)
    }

    pub(super) fn count_in(&mut self, id: Id, kind: usize, bytes: u64) {
        if self.in_window() {
            self.nodes[id as usize].bytes_in[kind] += bytes;
        }
    }

    pub(super) fn count_out(&mut self, id: Id, kind: usize, bytes: u64) {
        if self.in_window() {
            self.nodes[id as usize].bytes_out[kind] += bytes;
        }
    }

    pub(super) fn clip(&self, from: Us, to: Us) -> Us {
        to.min(self.window.1)
            .saturating_sub(from.max(self.window.0))
    }

    // ---- nodes ----

    pub(super) fn add_node(&mut self, kind: Kind, signing: SigningKey) -> Id {
        let id = Id::try_from(self.nodes.len()).expect("fewer than 4 billion nodes");
        let key = PeerKey::from(&signing);
        let capacity = match kind {
            Kind::Host => self.cfg.host_capacity,
            Kind::Relay => self.cfg.relay_capacity,
            Kind::Listener => self.cfg.fanout,
        };
        let ip: [u8; 4] = self.rng.random();
        let port: u16 = self.rng.random_range(1024..65535);
        let addr: multiaddr::Multiaddr = format!(
            "/ip4/{}.{}.{}.{}/udp/{port}/quic-v1",
            ip[0], ip[1], ip[2], ip[3]
        )
        .parse()
        .expect("a valid multiaddr");
        let addrs = vec![ByteBuf::from(addr.to_vec())];
        let mut subtree = Subtree::new(key, capacity, self.at(self.now));
        subtree.set_addrs(addrs.clone());
        if kind == Kind::Relay {
            self.carriers.push((key, capacity));
            self.audience.add_carrier(key, capacity);
        }
        subtree.set_carriers(self.carriers.iter().copied());
        let access = self.rng.random_range(10 * MS..=75 * MS);
        self.nodes.push(Node {
            key,
            kind,
            access,
            addrs,
            alive: true,
            leaving: false,
            m: Some(Box::new(Machines {
                signing,
                subtree,
                follower: None,
            })),
            attempt: 0,
            asked: None,
            parent: None,
            up: None,
            moving_from: None,
            kids: Vec::new(),
            hears: false,
            silent_since: None,
            pending_gap: None,
            depth: 0,
            pending_depth: 0,
            joined_at: self.now,
            first_audio: None,
            left_at: None,
            died_at: 0,
            gap: 0,
            link_since: None,
            keepalive_in: 0,
            keepalive_out: 0,
            repair: None,
            promised_to: Vec::new(),
            bytes_in: [0; KINDS.len()],
            bytes_out: [0; KINDS.len()],
            asking_attach: false,
            holds_host: false,
            last_report: 0,
            soon: false,
            summaries: Vec::new(),
        });
        self.present_at.push(usize::MAX);
        self.by_key.insert(key, id);
        if kind == Kind::Listener {
            self.present_at[id as usize] = self.present.len();
            self.present.push(id);
        }
        if kind != Kind::Host {
            let phase = self.rng.random_range(0..REPORT_INTERVAL.as_micros() as Us);
            self.push(self.now + phase, Ev::ReportTick(id));
        } else {
            self.push(REPORT_INTERVAL.as_micros() as Us, Ev::ReportTick(id));
        }
        id
    }

    pub(super) fn asked(&self, id: Id) -> Asked {
        let node = self.node(id);
        Asked {
            key: node.key,
            addrs: node.addrs.clone(),
        }
    }

    pub(super) fn is_entry(&self, id: Id) -> bool {
        match self.node(id).kind {
            Kind::Host => true,
            Kind::Relay => self.cfg.entry == Entry::Relays,
            Kind::Listener => false,
        }
    }

    /// A node starts following the tree: asks its entry point.
    pub(super) fn follow(&mut self, id: Id) {
        let entry = match (self.node(id).kind, self.cfg.entry) {
            (Kind::Listener, Entry::Relays) if !self.relays.is_empty() => {
                self.relays[self.rng.random_range(0..self.relays.len())]
            }
            _ => self.host,
        };
        let (follower, step) = Follower::new(self.asked(entry));
        self.machines(id).follower = Some(follower);
        self.step(id, step);
    }

    pub(super) fn follower(&mut self, id: Id) -> &mut Follower {
        self.machines(id)
            .follower
            .as_mut()
            .expect("a member follows the tree")
    }

    pub(super) fn step(&mut self, id: Id, step: Step) {
        self.node_mut(id).attempt += 1;
        let attempt = self.node(id).attempt;
        match step {
            Step::Ask { whom, lost, ticket } => {
                let to = self.id_of(&whom.key);
                let (req, kind, len) = match ticket {
                    None => (Req::Join, K_JOIN, self.join_len),
                    Some(ticket) => {
                        let len = codec::encode(&AttachWire {
                            room: ROOM,
                            lost,
                            ticket: &ticket,
                        })
                        .len() as u64
                            + 1
                            + RPC_OVERHEAD;
                        (Req::Attach { lost, ticket }, K_ATTACH, len)
                    }
                };
                let entry = self.is_entry(to);
                if lost == Some(whom.key) {
                    self.stats.asks_to_lost_parent += 1;
                }
                if let Some(repair) = self.node_mut(id).repair.as_mut() {
                    repair.asks += 1;
                    repair.reached_entry |= entry;
                }
                self.node_mut(id).asking_attach = kind == K_ATTACH;
                if to == id {
                    // Never expected: asking oneself is asking nobody.
                    let answer = AnswerMsg {
                        to: id,
                        from: id,
                        attempt,
                        placed: None,
                        why: Why::No("asked itself"),
                        len: 0,
                    };
                    self.push(self.now, Ev::Answer(Box::new(answer)));
                    return;
                }
                let delay = self.connect(id, to) + self.oneway(id, to);
                self.node_mut(id).asked = Some(to);
                self.count_out(id, kind, len);
                let ask = AskMsg {
                    from: id,
                    to,
                    attempt,
                    sent: self.now,
                    req,
                    len,
                };
                self.push(self.now + delay, Ev::Ask(Box::new(ask)));
            }
            Step::Open { parent, ticket, .. } => {
                let to = self.id_of(&parent);
                let len = LISTEN_HELLO + ticket.encode().len() as u64 + RPC_OVERHEAD;
                let delay = self.connect(id, to) + self.oneway(id, to);
                self.count_out(id, K_OPEN, len);
                self.push(
                    self.now + delay,
                    Ev::Open {
                        child: id,
                        parent: to,
                        attempt,
                        sent: self.now,
                        ticket,
                    },
                );
            }
            Step::Wait { until } => {
                self.stats.retries += 1;
                let at = until.saturating_duration_since(self.epoch).as_micros() as Us;
                self.push(at.max(self.now), Ev::Wake { node: id, attempt });
            }
        }
    }
}
