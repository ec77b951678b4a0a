//! Tests of the parent module.

use super::*;
use crate::model::PersonName;

fn grade(title: &str, score: f64) -> NewGrade {
    NewGrade::from_form(title, "Quiz", &score.to_string()).unwrap()
}

#[tokio::test]
async fn demo_data_is_seeded_once_and_only_when_asked() {
    let dir = tempfile::tempdir().unwrap();
    let store = GradeStore::open(dir.path(), true).unwrap();
    let students = store.students().await.unwrap();
    assert_eq!(students.len(), DEMO.len());
    assert_eq!(students[0].first_name.as_str(), "Zhang");
    assert_eq!(students[0].grades.len(), 3);
    drop(store);
    let again = GradeStore::open(dir.path(), true).unwrap();
    assert_eq!(
        again.students().await.unwrap().len(),
        DEMO.len(),
        "not seeded twice"
    );
    let empty_dir = tempfile::tempdir().unwrap();
    let empty = GradeStore::open(empty_dir.path(), false).unwrap();
    assert!(empty.students().await.unwrap().is_empty());
    drop(empty);
    let later = GradeStore::open(empty_dir.path(), true).unwrap();
    assert!(
        later.students().await.unwrap().is_empty(),
        "a database started empty stays empty"
    );
}

#[tokio::test]
async fn grades_are_added_corrected_and_deleted() {
    let dir = tempfile::tempdir().unwrap();
    let store = GradeStore::open(dir.path(), false).unwrap();
    let s = store
        .add_student(NewStudent {
            first_name: PersonName::parse("Ada").unwrap(),
            last_name: PersonName::parse("Lovelace").unwrap(),
        })
        .await
        .unwrap();
    let g = store.add_grade(s.id, grade("Quiz 1", 70.0)).await.unwrap();
    let fixed = store
        .update_grade(s.id, g.id, grade("Quiz 1", 75.5))
        .await
        .unwrap();
    assert_eq!(fixed.score.value(), 75.5);
    assert_eq!(store.student(s.id).await.unwrap().grades, vec![fixed]);
    store.delete_grade(s.id, g.id).await.unwrap();
    assert!(store.student(s.id).await.unwrap().grades.is_empty());
    assert!(matches!(
        store.delete_grade(s.id, g.id).await,
        Err(StoreError::NoSuchGrade { .. })
    ));
    assert!(matches!(
        store.add_grade(999, grade("Q", 1.0)).await,
        Err(StoreError::NoSuchStudent(999))
    ));
    assert!(matches!(
        store.student(999).await,
        Err(StoreError::NoSuchStudent(999))
    ));
}

#[test]
fn many_instances_can_open_one_new_file_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_owned();
    let start = std::sync::Arc::new(std::sync::Barrier::new(8));
    let opened: Vec<_> = (0..8)
        .map(|_| {
            let path = path.clone();
            let start = start.clone();
            std::thread::spawn(move || {
                start.wait();
                GradeStore::open(&path, true).map(|_| ())
            })
        })
        .collect();
    for handle in opened {
        handle.join().unwrap().unwrap();
    }
    let conn = Connection::open(dir.path().join(FILE_NAME)).unwrap();
    let students: i64 = conn
        .query_row("SELECT count(*) FROM students", [], |r| r.get(0))
        .unwrap();
    assert_eq!(students, DEMO.len() as i64, "seeded exactly once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_writes_are_all_stored_even_from_two_stores_on_one_file() {
    let dir = tempfile::tempdir().unwrap();
    let a = GradeStore::open(dir.path(), true).unwrap();
    let b = GradeStore::open(dir.path(), true).unwrap();
    let mut tasks = Vec::new();
    for i in 0..100 {
        let store = if i % 2 == 0 { a.clone() } else { b.clone() };
        tasks.push(tokio::spawn(async move {
            store
                .add_grade(1, grade(&format!("Quiz {i}"), f64::from(i % 101)))
                .await
                .unwrap()
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(a.student(1).await.unwrap().grades.len(), 3 + 100);
    assert_eq!(b.students().await.unwrap().len(), DEMO.len());
}
