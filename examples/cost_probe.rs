// Scratch (not committed): per-operation instruction counts under callgrind.
use futures_lite::StreamExt;
use glommio::{LocalExecutorBuilder, Placement};
use shardlet::{GreenPile, GreenPool};
use std::cell::Cell;
use std::hint::black_box;
use std::rc::Rc;

async fn wait_for(done: &Cell<u64>, n: u64) {
    while done.get() < n {
        glommio::executor().yield_task_queue_now().await;
    }
}

fn main() {
    let mut args = std::env::args().skip(1);
    let variant = args.next().unwrap();
    let n: u64 = args.next().unwrap().parse().unwrap();
    let ex = LocalExecutorBuilder::new(Placement::Unbound)
        .io_memory(1 << 20)
        .make()
        .unwrap();
    ex.run(async move {
        match variant.as_str() {
            "raw_spawn_n" => {
                let done = Rc::new(Cell::new(0u64));
                for _ in 0..n {
                    let d = done.clone();
                    glommio::spawn_local(async move { d.set(d.get() + 1) }).detach();
                }
                wait_for(&done, n).await;
            }
            "spawn_n" => {
                let done = Rc::new(Cell::new(0u64));
                for _ in 0..n {
                    let d = done.clone();
                    shardlet::spawn_n(async move { d.set(d.get() + 1) });
                }
                wait_for(&done, n).await;
            }
            "raw_spawn_join" => {
                for i in 0..n {
                    black_box(glommio::spawn_local(async move { i }).await);
                }
            }
            "spawn_join" => {
                for i in 0..n {
                    black_box(shardlet::spawn(async move { i }).await.unwrap());
                }
            }
            "pool_spawn_join" => {
                let pool = GreenPool::new(1000);
                for i in 0..n {
                    black_box(pool.spawn(async move { i }).await.await.unwrap());
                }
            }
            "raw_sem_spawn_join" => {
                let sem = Rc::new(glommio::sync::Semaphore::new(1000));
                for i in 0..n {
                    let permit = sem.acquire_static_permit(1).await.unwrap();
                    black_box(
                        glommio::spawn_local(async move {
                            let _p = permit;
                            i
                        })
                        .await,
                    );
                }
            }
            "imap_work" => {
                let pool = GreenPool::new(1000);
                for _ in 0..(n / 10000) {
                    black_box(
                        pool.imap(0..10000u64, |i| work(i, false))
                            .fold(0u64, |a, r| a + r.unwrap())
                            .await,
                    );
                }
            }
            "imap" => {
                let pool = GreenPool::new(1000);
                black_box(
                    pool.imap(0..n, |i| async move { i })
                        .fold(0u64, |a, r| a + r.unwrap())
                        .await,
                );
            }
            "raw_window" => {
                let mut window = std::collections::VecDeque::with_capacity(1000);
                let mut sum = 0u64;
                for i in 0..n {
                    if window.len() == 1000 {
                        let t: glommio::task::JoinHandle<u64> = window.pop_front().unwrap();
                        sum += t.await.unwrap();
                    }
                    window.push_back(glommio::spawn_local(async move { i }).detach());
                }
                for t in window {
                    sum += t.await.unwrap();
                }
                black_box(sum);
            }
            "pile" => {
                let pool = GreenPool::new(1000);
                for _ in 0..n / 1000 {
                    let mut pile = GreenPile::new(&pool);
                    for i in 0..1000u64 {
                        pile.spawn(async move { i }).await;
                    }
                    black_box(pile.fold(0u64, |a, r| a + r.unwrap()).await);
                }
            }
            "raw_pile" => {
                for _ in 0..n / 1000 {
                    let hs: Vec<_> = (0..1000u64)
                        .map(|i| glommio::spawn_local(async move { i }).detach())
                        .collect();
                    let mut s = 0;
                    for h in hs {
                        s += h.await.unwrap();
                    }
                    black_box(s);
                }
            }
            "raw_join_y" => {
                for i in 0..n {
                    black_box(
                        glommio::spawn_local(async move {
                            futures_lite::future::yield_now().await;
                            i
                        })
                        .await,
                    );
                }
            }
            "join_y" => {
                for i in 0..n {
                    black_box(
                        shardlet::spawn(async move {
                            futures_lite::future::yield_now().await;
                            i
                        })
                        .await
                        .unwrap(),
                    );
                }
            }
            "imap_y" => {
                let pool = GreenPool::new(1000);
                black_box(
                    pool.imap(0..n, |i| async move {
                        futures_lite::future::yield_now().await;
                        i
                    })
                    .fold(0u64, |a, r| a + r.unwrap())
                    .await,
                );
            }
            "raw_window_y" => {
                let mut window = std::collections::VecDeque::with_capacity(1000);
                let mut sum = 0u64;
                for i in 0..n {
                    if window.len() == 1000 {
                        let t: glommio::task::JoinHandle<u64> = window.pop_front().unwrap();
                        sum += t.await.unwrap();
                    }
                    window.push_back(
                        glommio::spawn_local(async move {
                            futures_lite::future::yield_now().await;
                            i
                        })
                        .detach(),
                    );
                }
                for t in window {
                    sum += t.await.unwrap();
                }
                black_box(sum);
            }
            "pile_y" => {
                let pool = GreenPool::new(1000);
                for _ in 0..n / 1000 {
                    let mut pile = GreenPile::new(&pool);
                    for i in 0..1000u64 {
                        pile.spawn(async move {
                            futures_lite::future::yield_now().await;
                            i
                        })
                        .await;
                    }
                    black_box(pile.fold(0u64, |a, r| a + r.unwrap()).await);
                }
            }
            "raw_pile_y" => {
                for _ in 0..n / 1000 {
                    let hs: Vec<_> = (0..1000u64)
                        .map(|i| {
                            glommio::spawn_local(async move {
                                futures_lite::future::yield_now().await;
                                i
                            })
                            .detach()
                        })
                        .collect();
                    let mut s = 0;
                    for h in hs {
                        s += h.await.unwrap();
                    }
                    black_box(s);
                }
            }
            other => panic!("{other}"),
        }
    });
}

async fn work(i: u64, wait: bool) -> u64 {
    if wait {
        futures_lite::future::yield_now().await;
    }
    i
}
